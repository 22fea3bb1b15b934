"""A small HTTP/1.1 client for generation requests to a server on this machine: JSON POSTs over kept-alive connections.

A general client (aiohttp, httpx) spends 150 µs or more of CPU on each request for features these requests
never use; at thousands of requests per second that, not the server, limits a run. This one writes the
request in one piece and parses the reply (Content-Length, chunked, or read to the close) in a protocol
callback. Everything else (the models list, scoring) still goes through the `openai` SDK.

It serves only plain `http://` to a loopback address (127.0.0.0/8, ::1, `localhost`, 0.0.0.0; `is_loopback`),
where what it leaves out is never needed: no proxy applies (loopback bypasses proxies, see `transport.py`) and
there is no TLS to do. It keeps what a local server may send: kept-alive connections, Content-Length, chunked
and read-to-close bodies, interim 1xx replies, gzip or deflate bodies sent unasked; one deadline covers
connecting and the reply; like the aiohttp route it follows no redirect and keeps no cookie. Retries,
Retry-After, rejects and error messages belong to the backend and are the same on both routes. Every other URL
goes through aiohttp (`transport.AiohttpClient`); `python -m bench endpoint` measures what this client saves
(its `lcsynth` against its `lcsynth-aiohttp` row).

Failures are plain exceptions: `asyncio.TimeoutError` when no complete reply came within the timeout,
`ConnectionError` (or another `OSError`) when the connection failed or dropped, `HttpProtocolError` for a
reply that is not HTTP/1.x. A request on a reused connection that the server had closed meanwhile is sent
once more on a new one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import zlib
from typing import NamedTuple
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 2**20


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine's loopback.

    0.0.0.0 and :: count: connecting to them reaches this machine, and servers print them as their address.

    >>> [is_loopback(h) for h in ("127.0.0.1", "127.8.0.2", "[::1]", "LOCALHOST", "0.0.0.0", "10.0.0.1", "llm.test")]
    [True, True, True, True, True, False, False]
    """
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


class HttpProtocolError(Exception):
    """The reply broke HTTP/1.1 framing."""


class HttpReply(NamedTuple):
    """Status, headers (names in lower case) and body of a reply."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection: sends a request, parses its reply, and says whether it can be used again."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.reply: asyncio.Future[HttpReply] | None = None
        self.closed = False
        self.reusable = True
        self.answered = False  # a byte of the current reply arrived
        self._reset()

    def _reset(self) -> None:
        self.head: tuple[int, dict[str, str]] | None = None
        self.length: int | None = None  # Content-Length; None with chunked or read-to-close bodies
        self.chunked = False
        self.chunks = bytearray()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.reply is None or self.reply.done():
            self.reusable = False  # bytes nobody asked for: do not trust this connection again
            return
        self.answered = True
        try:
            self._parse()
        except HttpProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._closing()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._closing()

    def _closing(self) -> None:
        self.reusable = False
        reply = self.reply
        if reply is None or reply.done():
            return
        if self.head is not None and self.length is None and not self.chunked:
            self._finish(bytes(self.buffer))  # a body that ends where the connection does
        else:
            self._fail(ConnectionResetError("the connection closed before the reply was complete"))

    # parsing

    def _parse(self) -> None:
        while self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise HttpProtocolError("reply headers larger than 64 KiB")
                return
            self._read_head(bytes(self.buffer[:end]))
            del self.buffer[:end + 4]
        if self.chunked:
            self._parse_chunks()
        elif self.length is not None and len(self.buffer) >= self.length:
            body = bytes(self.buffer[:self.length])
            del self.buffer[:self.length]
            self._finish(body)

    def _read_head(self, raw: bytes) -> None:
        lines = raw.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise HttpProtocolError(f"malformed header line: {line[:60]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if 100 <= status < 200:
            return  # an interim reply (100 Continue): the real one follows
        self.head = (status, headers)
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not self.chunked and "content-length" in headers:
            try:
                self.length = int(headers["content-length"])
            except ValueError:
                raise HttpProtocolError(f"bad Content-Length {headers['content-length'][:30]!r}") from None
            if not 0 <= self.length <= MAX_BODY_BYTES:
                raise HttpProtocolError(f"Content-Length {self.length} out of range")
        if parts[0] == b"HTTP/1.0" or headers.get("connection", "").lower() == "close" \
                or (self.length is None and not self.chunked):
            self.reusable = False

    def _parse_chunks(self) -> None:
        while True:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            try:
                size = int(bytes(self.buffer[:line_end]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpProtocolError("bad chunk size") from None
            if size == 0:  # the last chunk, then optional trailer lines and an empty line
                trailer_end = self.buffer.find(b"\r\n\r\n", line_end)
                if self.buffer[line_end:line_end + 4] == b"\r\n\r\n" or trailer_end >= 0:
                    del self.buffer[:max(trailer_end, line_end) + 4]
                    self._finish(bytes(self.chunks))
                return
            if len(self.buffer) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            if self.buffer[start + size:start + size + 2] != b"\r\n":
                raise HttpProtocolError("chunk not followed by CRLF")
            self.chunks += self.buffer[start:start + size]
            if len(self.chunks) > MAX_BODY_BYTES:
                raise HttpProtocolError("chunked body larger than 256 MiB")
            del self.buffer[:start + size + 2]

    def _finish(self, body: bytes) -> None:
        assert self.head is not None and self.reply is not None
        status, headers = self.head
        self._reset()
        if self.buffer:
            self.reusable = False  # more bytes than one reply
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):  # not asked for, but some proxies compress anyway
            try:
                body = zlib.decompress(body, 47 if encoding == "gzip" else 15)
            except zlib.error as exc:
                self._fail(HttpProtocolError(f"a {encoding} body that does not decompress ({exc})"))
                return
        if not self.reply.done():
            self.reply.set_result(HttpReply(status, headers, body))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # use

    async def exchange(self, request: bytes, timeout: float) -> HttpReply:
        """Send `request` and wait for its reply, at most `timeout` seconds."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.reply, self.answered = loop.create_future(), False
        timer = loop.call_later(timeout, self._fail, asyncio.TimeoutError())
        try:
            self.transport.write(request)
            return await self.reply
        finally:
            timer.cancel()
            self.reply = None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class Http1Client:
    """POSTs to paths under `base_url` (plain http, a loopback host) with fixed `headers`, over kept-alive connections.

    Any other URL is refused with ValueError, so this client cannot bypass a proxy or TLS by mistake. The caller
    bounds how many requests are in flight; the pool keeps as many connections as were needed.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname or not is_loopback(url.hostname):
            raise ValueError(f"not a plain http URL to a loopback address: {base_url}")
        self.host = url.hostname
        self.port = url.port or 80
        self.prefix, self.query = url.path.rstrip("/"), url.query
        default_port = self.port == 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"Host: {host if default_port else f'{host}:{self.port}'}"]
        for name, value in headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ValueError(f"header {name} holds a line break")
            if name.lower() not in ("host", "content-length", "connection", "transfer-encoding"):
                lines.append(f"{name}: {value}")
        self._headers = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.timeout = timeout
        self._idle: list[_Connection] = []

    async def post(self, path: str, body: bytes) -> HttpReply:
        """POST `body` to `path` (relative to the base URL's path) and return the reply, whatever its status."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        target = self.prefix + path + (f"?{self.query}" if self.query else "")
        request = b"".join((b"POST ", target.encode("utf-8"), b" HTTP/1.1\r\n", self._headers,
                            b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body))
        while self._idle:
            connection = self._idle.pop()
            if connection.closed or not connection.reusable:
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, deadline)
            except ConnectionError:
                if connection.answered:
                    raise
                # the server closed this idle connection before the request reached it: use a new one
        return await self._exchange(await self._connect(deadline), request, deadline)

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(_Connection, self.host, self.port)
        _, connection = await asyncio.wait_for(connect, max(deadline - loop.time(), 0.001))
        return connection

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> HttpReply:
        try:
            reply = await connection.exchange(request, max(deadline - asyncio.get_running_loop().time(), 0.001))
        except BaseException:
            connection.close()
            raise
        if connection.reusable and not connection.closed:
            self._idle.append(connection)
        else:
            connection.close()
        return reply

    async def close(self) -> None:
        """Close every idle connection."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()
