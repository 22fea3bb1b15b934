"""https endpoints: certificates checked on the aiohttp route, loopback https direct, other hosts through a CONNECT
tunnel on loopback (tests/forward_proxy.py) whose name only the tunnel resolves, credentials kept out of errors.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess

import pytest
from aiohttp import web
from fake_openai import FakeOpenAI
from forward_proxy import ConnectProxy
from test_http1 import ScriptedServer, ok
from test_proxy import CHAT, backend_for, proxy_env, run, start_and_fail  # noqa: F401 - `proxy_env` is a fixture

from lcsynth.backends.transport import ClientFault, open_client

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for certificates")


def certificate(folder, subject_alt_name: str):
    """A self-signed key and certificate (PEM files) for `subject_alt_name`."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                    "-addext", f"subjectAltName={subject_alt_name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def tls_server(key, cert) -> ssl.SSLContext:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return tls


@needs_openssl
def test_https_checks_certificates_and_loopback_https_skips_the_proxy(tmp_path, monkeypatch, proxy_env):  # noqa: F811
    key, cert = certificate(tmp_path, "IP:127.0.0.1")
    tls = tls_server(key, cert)
    proxy_env(HTTPS_PROXY="http://127.0.0.1:9")  # nothing listens there: a proxied request would fail

    async def main(trusted: bool):
        async with ScriptedServer(lambda n, r: ok(b'{"secure": true}'), tls=tls) as server:
            client = open_client(f"https://127.0.0.1:{server.port}/v1", {}, 5)
            try:
                if trusted:
                    return await client.post("/chat/completions", b"{}")
                with pytest.raises(ClientFault, match="Certificate"):
                    await client.post("/chat/completions", b"{}")
            finally:
                await client.close()

    run(main(trusted=False))  # a certificate nobody vouches for is refused
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert run(main(trusted=True)).body == b'{"secure": true}'


class TlsFakeOpenAI(FakeOpenAI):
    """The fake OpenAI server behind TLS."""

    def __init__(self, tls: ssl.SSLContext, **options) -> None:
        super().__init__(**options)
        self.tls = tls

    async def __aenter__(self) -> TlsFakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self


@needs_openssl
def test_https_through_the_https_proxy_tunnel(tmp_path, monkeypatch, proxy_env):  # noqa: F811
    cert = certificate(tmp_path, "DNS:llm.internal")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[1]))

    async def main():
        async with TlsFakeOpenAI(tls_server(*cert)) as fake, ConnectProxy({"llm.internal": "127.0.0.1"}) as tunnel:
            proxy_env(HTTPS_PROXY=tunnel.url, HTTP_PROXY="http://127.0.0.1:9")  # the http one would fail
            backend = backend_for(f"https://llm.internal:{fake.port}/v1", max_retries=0)
            try:
                await backend.start()
                return (await backend.complete(CHAT)).text, tunnel.seen, fake.port
            finally:
                await backend.aclose()

    text, seen, port = run(main())
    assert text == "fine"
    assert seen and set(seen) == {f"CONNECT llm.internal:{port}"}  # the SDK's check and the request both tunnelled


def test_a_refused_tunnel_fails_in_one_line_without_the_proxy_password(proxy_env):  # noqa: F811
    async def main():
        async with ConnectProxy({}) as tunnel:  # resolves nothing: every CONNECT gets 502
            proxy_env(HTTPS_PROXY=tunnel.url.replace("://", "://alice:s3cret@"))
            start, request = await start_and_fail("https://llm.internal/v1", max_retries=0)
            return str(start), request.detail, tunnel.seen

    message, detail, seen = run(main())
    assert seen == ["CONNECT llm.internal:443"] * 2
    assert re.fullmatch(r"cannot reach https://llm\.internal/v1/? through the proxy http://127\.0\.0\.1:\d+ "
                        r"\(are the server and the proxy running\?\)", message)
    assert detail.startswith("ClientHttpProxyError: 502") and "\n" not in detail
    assert "s3cret" not in detail and "alice" not in detail
