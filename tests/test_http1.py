"""The loopback HTTP/1.1 client against scripted loopback servers: framing, reuse, failures."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest

from lcsynth.backends.http1 import Http1Client, HttpProtocolError

Script = Callable[[int, bytes], list[bytes] | None]  # (request number, request) -> chunks to send, None: hang


class ScriptedServer:
    """Reads each request (head and Content-Length body) and answers with what `script` says."""

    def __init__(self, script: Script, close_after: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.script, self.close_after, self.tls = script, close_after, tls
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                chunks = self.script(len(self.requests), request)
                if chunks is None:
                    await asyncio.sleep(30)
                    return
                for chunk in chunks:
                    writer.write(chunk)
                    await writer.drain()
                if self.close_after or not chunks or b"Connection: close" in chunks[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 20))


def test_request_bytes_and_kept_alive_connection():
    async def main():
        async with ScriptedServer(lambda n, r: ok(b'{"n": %d}' % n)) as server:
            url = f"http://127.0.0.1:{server.port}/v1?api-version=2024"
            client = Http1Client(url, {"Authorization": "Bearer k"}, 5)
            replies = [await client.post("/chat/completions", b'{"x": 1}') for _ in range(3)]
            await client.close()
            return server, replies

    server, replies = run(main())
    assert [r.body for r in replies] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert replies[0].status == 200 and replies[0].headers["content-type"] == "application/json"
    assert server.connections == 1  # one kept-alive connection served all three
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?api-version=2024 HTTP/1.1"
    assert {b"Host: 127.0.0.1:%d" % server.port, b"Authorization: Bearer k", b"Content-Length: 8"} <= set(lines)
    assert body == b'{"x": 1}'


def test_chunked_interim_and_read_to_close_replies():
    chunked = [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
               b"4;name=x\r\n{\"a\"\r\n", b"5\r\n: 12}\r\n0\r\nX-Trailer: 1\r\n\r\n"]
    to_close = [b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nConnection: close\r\n\r\nstill busy"]

    async def main():
        async with ScriptedServer(lambda n, r: chunked if n == 1 else to_close) as server:
            client = Http1Client(f"http://127.0.0.1:{server.port}", {}, 5)
            first = await client.post("/v1/completions", b"{}")
            second = await client.post("/v1/completions", b"{}")
            third = await client.post("/v1/completions", b"{}")
            return server, first, second, third

    server, first, second, third = run(main())
    assert (first.status, first.body) == (200, b'{"a": 12}')
    assert (second.status, second.headers["retry-after"], second.body) == (503, "2", b"still busy")
    assert third.status == 503
    assert server.connections == 2  # the read-to-close reply used its connection up


def test_compressed_replies_are_decompressed():
    import gzip

    body = b'{"choices": []}'
    packed = gzip.compress(body)

    async def main():
        replies = {1: ok(packed, b"Content-Encoding: gzip\r\n"), 2: ok(b"not gzip", b"Content-Encoding: gzip\r\n")}
        async with ScriptedServer(lambda n, r: replies[n]) as server:
            client = Http1Client(f"http://127.0.0.1:{server.port}", {}, 5)
            first = await client.post("/a", b"{}")
            with pytest.raises(HttpProtocolError, match="does not decompress"):
                await client.post("/a", b"{}")
            return first

    assert run(main()).body == body


def test_kept_alive_connection_closed_by_the_server_is_replaced_without_a_lost_request():
    # the second request reaches a connection the server is closing: it answers nothing and hangs up
    async def main():
        async with ScriptedServer(lambda n, r: [] if n == 2 else ok()) as server:
            client = Http1Client(f"http://127.0.0.1:{server.port}", {}, 5)
            await client.post("/a", b"1")
            reply = await client.post("/a", b"2")
            return server, reply

    server, reply = run(main())
    assert reply.status == 200 and server.connections == 2
    assert [r.endswith(b"\r\n\r\n2") for r in server.requests] == [False, True, True]


def test_a_reply_cut_short_is_an_error_and_not_sent_again():
    truncated = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":"]

    async def main():
        async with ScriptedServer(lambda n, r: truncated, close_after=True) as server:
            client = Http1Client(f"http://127.0.0.1:{server.port}", {}, 5)
            with pytest.raises(ConnectionError):
                await client.post("/a", b"{}")
            return server

    assert len(run(main()).requests) == 1


def test_no_reply_times_out_and_garbage_is_a_protocol_error():
    async def main():
        async with ScriptedServer(lambda n, r: None) as silent:
            client = Http1Client(f"http://127.0.0.1:{silent.port}", {}, 0.3)
            started = asyncio.get_running_loop().time()
            with pytest.raises(asyncio.TimeoutError):
                await client.post("/a", b"{}")
            waited = asyncio.get_running_loop().time() - started
        async with ScriptedServer(lambda n, r: [b"SSH-2.0-OpenSSH\r\n\r\n"]) as wrong:
            client = Http1Client(f"http://127.0.0.1:{wrong.port}", {}, 5)
            with pytest.raises(HttpProtocolError, match="status line"):
                await client.post("/a", b"{}")
        return waited

    assert 0.25 < run(main()) < 5


def test_header_values_cannot_inject_lines():
    with pytest.raises(ValueError, match="line break"):
        Http1Client("http://127.0.0.1:1", {"OpenAI-Project": "p\r\nX-Evil: 1"}, 5)
    with pytest.raises(ValueError, match="http"):
        Http1Client("ftp://127.0.0.1/v1", {}, 5)
