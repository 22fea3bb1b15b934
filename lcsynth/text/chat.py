"""Chat templates rendered as the model's own Jinja template says, including the self-query prefix."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lcsynth.errors import BackendError

# A marker no document contains; rendering a user turn holding it shows where the turn's text begins.
_SENTINEL = "\x00lcsynth-user-turn\x00"


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    """A model's chat template (Jinja, as shipped in GGUF metadata or tokenizer_config.json)."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.source = source
        self._template = env.from_string(source)
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render messages as the model reads them."""
        try:
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **self._tokens
            )
        except TemplateError as exc:
            raise BackendError(f"the model's chat template failed: {exc}") from None

    def self_query_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render `messages`, then open a user turn and stop where its text would begin.

        This is LongMagpie's prompt: the model sees the context and only the user-turn header, so
        what it writes next is a user query.
        """
        full = self.render([*messages, {"role": "user", "content": _SENTINEL}], add_generation_prompt=False)
        cut = full.find(_SENTINEL)
        if cut < 0:
            raise BackendError("the model's chat template drops user text; it cannot be used for self-query")
        return full[:cut]


# Used when a model ships no template at all: the ChatML layout most instruct models understand.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def template_from_metadata(metadata: dict[str, Any]) -> ChatTemplate:
    """Build the chat template a GGUF file declares (falling back to ChatML)."""
    return ChatTemplate(metadata.get("tokenizer.chat_template") or CHATML)


def template_for_tokenizer(tokenizer: Any) -> ChatTemplate:
    """The chat template that belongs to a tokenizer: GGUF metadata, or a transformers tokenizer's own."""
    metadata = getattr(tokenizer, "metadata", None)
    if metadata is not None:
        return template_from_metadata(metadata)
    hf = getattr(tokenizer, "hf", None)
    source = getattr(hf, "chat_template", None)
    if not source:
        raise BackendError(f"tokenizer {tokenizer.name} has no chat template; the model needs one for chat data")
    return ChatTemplate(source, bos_token=hf.bos_token or "", eos_token=hf.eos_token or "")


def context_length_from_metadata(metadata: dict[str, Any]) -> int | None:
    """The training context length a GGUF file declares (`<arch>.context_length`)."""
    arch = metadata.get("general.architecture")
    value = metadata.get(f"{arch}.context_length") if arch else None
    return int(value) if value else None
