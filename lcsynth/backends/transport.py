"""How the generation requests reach the endpoint: the loopback client, or aiohttp with the user's network setup.

The rule, decided once per backend by `choose_route`:

- a plain `http://` base URL whose host is a loopback address (127.0.0.0/8, ::1, `localhost`, 0.0.0.0) is posted by
  `http1.Http1Client`, straight to the server and never through a proxy;
- every other base URL is posted by aiohttp, through the proxy the environment names for it: `HTTP_PROXY` for
  http and `HTTPS_PROXY` for https URLs, unless `NO_PROXY` covers the host (upper or lower case, read as
  `urllib.request` and aiohttp's `trust_env` read them; credentials in the proxy URL are sent to the proxy).
  Certificates are checked against the system's CAs, or `SSL_CERT_FILE` / `SSL_CERT_DIR`.

Loopback bypasses proxies whatever the environment says (Go's net/http does the same): a proxy elsewhere cannot
reach this machine's loopback, so sending it such a request fails at best and reaches another server at worst.
The proxy is read from the environment once per backend and handed to aiohttp, rather than aiohttp reading it
again per request (`trust_env=True`): that costs two thread hand-offs per request, and it also applies a
`~/.netrc` entry for the host, which aiohttp refuses to combine with the API key's Authorization header.
The `openai` SDK's own calls (`/models` at start, scoring) take the same route (`sdk_route_options`), so the
start-up check tests the way the generation requests go.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

from lcsynth.backends.http1 import Http1Client, HttpReply, is_loopback

USERINFO = re.compile(r"(\w+://)[^/@\s'\"]*@")  # the user:password@ of a URL in a message


class Route(NamedTuple):
    """`loopback` (the small client, no proxy) or `aiohttp`, and the proxy aiohttp will use (None: direct)."""

    client: str
    proxy: str | None


class PostClient(Protocol):
    """What the backend needs of a client: POST a body under the base URL, close."""

    async def post(self, path: str, body: bytes) -> HttpReply:
        """POST `body` to `path` under the base URL; the reply whatever its status."""

    async def close(self) -> None:
        """Close the connections."""


class ClientFault(ConnectionError):
    """aiohttp failed to get a reply (connection refused or dropped, proxy or TLS failure, bad URL)."""


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (None: go direct); loopback hosts never get one.

    >>> proxy_for("http://127.0.0.1:8000/v1") is None
    True
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback(host):
        return None
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or proxy_bypass_environment(host, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def choose_route(base_url: str) -> Route:
    """Which client posts to `base_url`, and through which proxy (the module docstring gives the rule)."""
    url = urlsplit(base_url)
    if url.scheme == "http" and is_loopback(url.hostname or ""):
        return Route("loopback", None)
    return Route("aiohttp", proxy_for(base_url))


def sdk_route_options(base_url: str) -> dict[str, Any]:
    """Options for the SDK's httpx client that make it take `choose_route`'s route to `base_url`."""
    proxy = choose_route(base_url).proxy
    if proxy:
        return {"proxy": proxy}
    host = urlsplit(base_url).hostname or ""
    return {"mounts": {f"all://[{host}]" if ":" in host else f"all://{host}": None}}  # direct, whatever the env


def shown_proxy(proxy: str) -> str:
    """A proxy URL as messages show it: scheme, host and port, never its credentials."""
    url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.hostname}{port}"


def open_client(base_url: str, headers: dict[str, str], timeout: float) -> PostClient:
    """The client `choose_route` picks for `base_url`."""
    route = choose_route(base_url)
    if route.client == "loopback":
        return Http1Client(base_url, headers, timeout)
    return AiohttpClient(base_url, headers, timeout, route.proxy)


def fault_text(exc: BaseException) -> str:
    """One line for a transport failure: the failing class's name and what it said."""
    if isinstance(exc, ClientFault):
        return str(exc)[:240]
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class AiohttpClient:
    """POSTs to paths under `base_url` with fixed `headers` through one aiohttp session, via `proxy` if given.

    It behaves as `Http1Client` does where users can tell: no redirect is followed and no cookie kept, gzip and
    deflate replies are decompressed, and failures take the same shapes: `asyncio.TimeoutError` when no complete
    reply came within `timeout` (connecting, through the proxy if any, included), `ClientFault` for every other
    aiohttp failure. The caller bounds how many requests are in flight.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, proxy: str | None = None) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.prefix = url._replace(query="", fragment="").geturl().rstrip("/")
        self.query = f"?{url.query}" if url.query else ""
        self.headers, self.timeout, self.proxy = dict(headers), timeout, proxy
        self._session: Any = None

    def _open(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, ssl=ssl.create_default_context())  # the caller bounds requests
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self.headers, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False)  # the proxy is given per request
        return self._session

    async def post(self, path: str, body: bytes) -> HttpReply:
        """POST `body` to `path` (relative to the base URL's path) and return the reply, whatever its status."""
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.post(self.prefix + path + self.query, data=body, proxy=self.proxy,
                                    allow_redirects=False) as response:
                raw = await response.read()
                headers = {name.lower(): value for name, value in response.headers.items()}
                return HttpReply(response.status, headers, raw)
        except asyncio.TimeoutError:
            raise
        except aiohttp.ClientError as exc:  # its text may quote the proxy URL, credentials and all
            text = USERINFO.sub(r"\1", str(exc))
            raise ClientFault(f"{type(exc).__name__}: {text[:200]}") from None

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
