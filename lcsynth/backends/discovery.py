"""What an OpenAI-compatible server can tell about itself: the model it serves, its tokens and chat template.

Used when a recipe leaves `backend.model` or `backend.tokenizer` out. The model is the one `/models` lists
when it lists exactly one. Tokens come from, in order: the model's own folder when `/models` names one on
this machine (vLLM's `root`), else the server's `/tokenize` and `/detokenize` (llama.cpp's server and
`lcsynth serve-local`: `{"content": text}` in, `{"tokens": [...]}` out; vLLM and SGLang read `prompt` and
`model` from the same body) with the chat template its `/props` reports.

These calls take the generation requests' route (`transport.proxy_for`): a loopback server directly, any other
through the proxy the environment names for it.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lcsynth.backends.transport import proxy_for
from lcsynth.errors import ConfigError

TIMEOUT = 30.0


def server_root(base_url: str) -> str:
    """The server's root URL: `base_url` without a trailing /v1.

    >>> server_root("http://127.0.0.1:8080/v1/")
    'http://127.0.0.1:8080'
    """
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def get_json(url: str, headers: dict[str, str], body: Any = None, timeout: float = TIMEOUT) -> Any:
    """GET (or POST `body` as JSON) and decode the reply; None for a 404 or 405 (no such endpoint)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={**headers, "Content-Type": "application/json"})
    proxy = proxy_for(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({urlsplit(url).scheme: proxy} if proxy else {}))
    try:
        with opener.open(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return None
        raise


def served_models(base_url: str, headers: dict[str, str]) -> list[dict[str, Any]] | None:
    """The `data` entries of `/models`; [] when the server has no such list, None when it cannot be reached."""
    try:
        listed = get_json(f"{base_url.rstrip('/')}/models", headers)
    except (OSError, ValueError):
        return None
    entries = listed.get("data") if isinstance(listed, dict) else None
    return [e for e in entries if isinstance(e, dict) and "id" in e] if isinstance(entries, list) else []


def default_model(base_url: str, models: list[dict[str, Any]] | None) -> str:
    """The one model the server lists, or a one-line error naming `backend.model`."""
    if models and len(models) == 1:
        return str(models[0]["id"])
    found = ("it cannot be reached" if models is None else
             f"it serves {', '.join(str(m['id']) for m in models[:10])}" if models else "its /models lists none")
    raise ConfigError(f"backend.model: say which model to use ({base_url}: {found})")


class RemoteTokenizer:
    """A served model's tokens, counted by the server's own `/tokenize` (one HTTP call per text)."""

    def __init__(self, root: str, model: str, headers: dict[str, str], metadata: dict[str, Any]) -> None:
        self.root, self.model, self.headers, self.metadata = root, model, headers, metadata
        self.name = f"{root}/tokenize"
        self._connection: http.client.HTTPConnection | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_connection": None}  # a worker process opens its own

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if proxy_for(self.root):  # through the environment's proxy, one request per call
            reply = get_json(self.root + path, self.headers, body)
            if reply is None:
                raise OSError(f"{self.root}{path} answered 404")
            return reply
        if self._connection is None:
            parts = urlsplit(self.root)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            self._connection = kind(parts.netloc, timeout=TIMEOUT)
        prefix = urlsplit(self.root).path.rstrip("/")
        payload = json.dumps(body).encode()
        for attempt in (0, 1):  # a kept-alive connection the server closed is opened again once
            try:
                self._connection.request("POST", prefix + path, payload, {**self.headers,
                                                                         "Content-Type": "application/json"})
                reply = self._connection.getresponse()
                data = reply.read()
                break
            except (http.client.HTTPException, OSError):
                self._connection.close()
                if attempt:
                    raise
        if reply.status != 200:
            raise OSError(f"{self.root}{path} answered {reply.status}")
        return json.loads(data)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as the server counts them, without BOS."""
        reply = self._post("/tokenize", {"content": text, "add_special": False, "prompt": text, "model": self.model,
                                         "add_special_tokens": False})
        return [t["id"] if isinstance(t, dict) else int(t) for t in reply["tokens"]]

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, from the server's `/detokenize`."""
        reply = self._post("/detokenize", {"tokens": ids, "model": self.model})
        return str(reply.get("content", reply.get("prompt", "")))


def served_tokenizer(base_url: str, model: str, models: list[dict[str, Any]], headers: dict[str, str]) -> Any:
    """The served model's tokenizer without a `backend.tokenizer`, or a one-line error naming that key."""
    from lcsynth.text.tokens import load_tokenizer

    root_path = next((str(m.get("root")) for m in models if m["id"] == model and m.get("root")), "")
    if root_path and (Path(root_path).is_dir() or root_path.endswith(".gguf") and Path(root_path).is_file()):
        return load_tokenizer(root_path)
    root = server_root(base_url)
    try:
        props = get_json(f"{root}/props", headers) or {}
        tokenizer = RemoteTokenizer(root, model, headers, {})
        tokenizer.encode("lcsynth")
    except (OSError, ValueError, KeyError, TypeError):
        props, tokenizer = {}, None
    template = props.get("chat_template") if isinstance(props, dict) else None
    if tokenizer is None or not template:
        missing = "no /tokenize" if tokenizer is None else "no chat template in /props"
        raise ConfigError(f"backend.tokenizer: {base_url} cannot count tokens for lcsynth ({missing}); set it to the "
                          "model's tokenizer (a Hugging Face name or folder, or a .gguf path)")
    context = (props.get("default_generation_settings") or {}).get("n_ctx")
    tokenizer.metadata = {"tokenizer.chat_template": template, "general.architecture": "served",
                          **({"served.context_length": context} if context else {})}
    return tokenizer
