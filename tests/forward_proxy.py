"""Forward proxies on 127.0.0.1 for proxy tests (fakes, bounded): one for http URLs, one tunnelling https (CONNECT).

Both look host names up in `hosts` only (e.g. {"llm.internal": "127.0.0.1"}), so a base URL whose host nothing
but the proxy can resolve reaches a loopback server; any other name gets 502. `seen` keeps what arrived. The http
proxy (`ForwardProxy`) takes absolute-form requests and, with `credentials` ("user:password"), answers 407 to a
request without them.
"""

from __future__ import annotations

import asyncio
import base64

import aiohttp
from aiohttp import web
from loopback_server import LoopbackServer
from yarl import URL

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length", "host"}


class ForwardProxy(LoopbackServer):
    def __init__(self, hosts: dict[str, str], credentials: str | None = None) -> None:
        self.hosts, self.credentials = hosts, credentials
        self.seen: list[str] = []
        self.port = 0

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = URL(request.raw_path)  # absolute-form: http://host:port/path?query
        if not target.is_absolute():
            return web.Response(status=400, text="a proxy wants absolute-form request targets")
        self.seen.append(str(target))
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if request.headers.get("Proxy-Authorization") != expected:
                return web.Response(status=407, headers={"Proxy-Authenticate": 'Basic realm="test"'})
        address = self.hosts.get(target.host or "")
        if address is None:
            return web.Response(status=502, text=f"the proxy cannot resolve {target.host}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = target.raw_authority
        upstream = target.with_host(address)
        async with self._client.request(request.method, upstream, headers=headers, data=await request.read(),
                                        allow_redirects=False) as reply:
            body = await reply.read()
            kept = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=reply.status, headers=kept, body=body)

    async def __aenter__(self) -> ForwardProxy:
        # trust_env=False: the tests set HTTP_PROXY to this very proxy
        self._client = aiohttp.ClientSession(auto_decompress=False, trust_env=False,
                                             timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()
        await self._client.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ConnectProxy:
    """A tunnelling proxy on 127.0.0.1 for https URLs: `CONNECT host:port`, with hosts looked up in `hosts` only.

    `seen` keeps each CONNECT target; the bytes inside the tunnel (TLS) are relayed untouched.
    """

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts
        self.seen: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            self.seen.append(f"{method} {target}")
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or host not in self.hosts:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(self.hosts[host], int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_relay(reader, upstream_writer), _relay(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
