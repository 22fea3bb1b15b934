"""The generation client and the network setup: which route a base URL takes, and a real proxy on loopback.

`ForwardProxy` (tests/forward_proxy.py) is a forward proxy on 127.0.0.1 that alone resolves `llm.internal` to the
loopback fake OpenAI server, so a run reaches that host only if its requests really go through the proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re

import pytest
from aiohttp.helpers import get_env_proxy_for_url
from fake_openai import FakeOpenAI
from forward_proxy import ForwardProxy
from qa_run import answer, doc_text, lcsynth, read_jsonl, write_corpus, write_recipe
from test_http1 import ScriptedServer, ok
from yarl import URL

from lcsynth.backends.base import Request
from lcsynth.backends.http1 import Http1Client, is_loopback
from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.backends.openai_compat import OpenAIBackend
from lcsynth.backends.transport import (
    AiohttpClient,
    Route,
    choose_route,
    open_client,
    shown_proxy,
)
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError, Reject

CHAT = Request.chat([{"role": "user", "content": "hi"}], max_tokens=5, seed=1)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD")


@pytest.fixture
def proxy_env(monkeypatch):
    """Set proxy variables for one test, after clearing every one the machine had (either case)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def backend_for(url: str, **options) -> OpenAIBackend:
    spec = BackendSpec(type="openai", base_url=url, model="fake", tokenizer=str(bundled_gguf()), **options)
    return OpenAIBackend(spec)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def start_and_ask(url: str, **options) -> str:
    """Start a backend for `url` and send one chat request; its text."""
    backend = backend_for(url, **options)
    try:
        await backend.start()
        return (await backend.complete(CHAT)).text
    finally:
        await backend.aclose()


async def start_and_fail(url: str, **options) -> tuple[BackendError, Reject]:
    """Start a backend for `url` that cannot reach it: the start-up error and the request's reject."""
    backend = backend_for(url, **options)
    try:
        with pytest.raises(BackendError) as start:
            await backend.start()
        with pytest.raises(Reject) as request:
            await backend.complete(CHAT)
    finally:
        await backend.aclose()
    return start.value, request.value


# --- which route, at the unit level ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://127.3.4.5/v1", "http://localhost:8000/v1",
                                 "http://LOCALHOST./v1", "http://[::1]:8000/v1", "http://0.0.0.0:8000/v1"])
def test_plain_http_to_loopback_takes_the_small_client_and_no_proxy(proxy_env, url):
    proxy_env(HTTP_PROXY="http://proxy.corp:3128", HTTPS_PROXY="http://proxy.corp:3129")
    assert choose_route(url) == Route("loopback", None)
    assert isinstance(open_client(url, {}, 5), Http1Client)


@pytest.mark.parametrize("url", ["https://127.0.0.1:8443/v1", "http://llm.internal:8000/v1", "http://10.0.0.7/v1",
                                 "https://api.openai.com/v1"])
def test_everything_else_takes_aiohttp(proxy_env, url):
    assert choose_route(url) == Route("aiohttp", None)  # no proxy variable set: direct
    assert isinstance(open_client(url, {}, 5), AiohttpClient)
    with pytest.raises(ValueError, match="loopback"):
        Http1Client(url, {}, 5)  # the small client refuses what it must not carry


@pytest.mark.parametrize(("env", "url", "proxy"), [
    ({"HTTPS_PROXY": "http://sp:3129", "HTTP_PROXY": "http://hp:3128"}, "https://api.example.com/v1", "http://sp:3129"),
    ({"HTTPS_PROXY": "http://sp:3129", "HTTP_PROXY": "http://hp:3128"}, "http://llm.internal:8000/v1",
     "http://hp:3128"),
    ({"https_proxy": "http://lower:8080"}, "https://api.example.com/v1", "http://lower:8080"),
    ({"HTTPS_PROXY": "sp:3129"}, "https://api.example.com/v1", "http://sp:3129"),  # no scheme: http (as curl)
    ({"HTTPS_PROXY": "http://sp:3129"}, "http://api.example.com/v1", None),  # no proxy for http URLs
    ({"HTTP_PROXY": "http://hp:3128"}, "https://api.example.com/v1", None),  # nor for https ones
    ({"HTTPS_PROXY": "http://sp:3129", "NO_PROXY": "example.com"}, "https://api.example.com/v1", None),
    ({"HTTPS_PROXY": "http://sp:3129", "no_proxy": ".example.com"}, "https://api.example.com/v1", None),
    ({"HTTPS_PROXY": "http://sp:3129", "NO_PROXY": "*"}, "https://api.example.com/v1", None),
    ({"HTTPS_PROXY": "http://sp:3129", "NO_PROXY": "other.org,10.0.0.0"}, "https://api.example.com/v1",
     "http://sp:3129"),
    ({"HTTPS_PROXY": "http://sp:3129"}, "https://127.0.0.1:8443/v1", None),  # loopback: never proxied
    ({"HTTP_PROXY": "http://hp:3128"}, "http://localhost:8000/v1", None),
])
def test_the_proxy_is_the_one_the_environment_names(proxy_env, env, url, proxy):
    proxy_env(**env)
    assert choose_route(url).proxy == proxy
    schemes_given = all("://" in v for k, v in env.items() if "proxy" in k.lower() and k.lower() != "no_proxy")
    if schemes_given and not is_loopback(URL(url).host or ""):  # aiohttp's own reading of the variables agrees
        try:
            aiohttp_proxy = str(get_env_proxy_for_url(URL(url))[0])
        except LookupError:
            aiohttp_proxy = None
        assert aiohttp_proxy == proxy


def test_proxy_credentials_never_reach_messages():
    assert shown_proxy("http://alice:s3cret@proxy.corp:3128") == "http://proxy.corp:3128"
    assert shown_proxy("proxy.corp") == "http://proxy.corp"


# --- the aiohttp client against scripted loopback servers ------------------------------------------------------

def test_aiohttp_client_request_and_reply_as_the_small_client_gives_them(proxy_env):
    packed = gzip.compress(b'{"choices": []}')
    replies = {1: ok(packed, b"Content-Encoding: gzip\r\nRetry-After: 2\r\n"),
               2: [b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"]}

    async def main():
        async with ScriptedServer(lambda n, r: replies[n]) as server:
            url = f"http://127.0.0.1:{server.port}/v1/?api-version=2024"
            client = AiohttpClient(url, {"Authorization": "Bearer k"}, 5)
            try:
                return server, [await client.post("/chat/completions", b'{"x": 1}') for _ in range(2)]
            finally:
                await client.close()

    server, (first, moved) = run(main())
    assert (first.status, first.headers["retry-after"], first.body) == (200, "2", b'{"choices": []}')
    assert moved.status == 307 and len(server.requests) == 2  # a redirect is the caller's to judge, not followed
    head, body = server.requests[0].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions?api-version=2024 HTTP/1.1\r\n") and body == b'{"x": 1}'
    assert b"\r\nAuthorization: Bearer k\r\n" in head


# --- a real proxy on loopback ---------------------------------------------------------------------------------

def with_proxy(test, credentials=None, **server):
    async def main():
        async with FakeOpenAI(**server) as fake, ForwardProxy({"llm.internal": "127.0.0.1"}, credentials) as proxy:
            return await test(fake, proxy)

    return run(main())


def test_a_host_only_the_proxy_can_resolve_is_reached_through_it(proxy_env):
    async def test(fake, proxy):
        proxy_env(HTTP_PROXY=proxy.url)
        backend = backend_for(f"http://llm.internal:{fake.port}/v1")
        try:
            await backend.start()
            texts = [c.text for c in await asyncio.gather(*(backend.complete(CHAT) for _ in range(3)))]
            return texts, fake.arrivals, fake.port, proxy.seen
        finally:
            await backend.aclose()

    texts, arrivals, port, seen = with_proxy(test)
    assert texts == ["fine"] * 3 and arrivals == 3
    assert seen[0] == f"http://llm.internal:{port}/v1/models"  # the SDK's start-up check went the same way
    assert seen[1:] == [f"http://llm.internal:{port}/v1/chat/completions"] * 3


def test_without_the_proxy_the_host_fails_in_one_line_and_soon(proxy_env):
    async def test(fake, proxy):
        start, request = await start_and_fail(f"http://llm.internal:{fake.port}/v1", max_retries=1,
                                              retry_backoff=0.01)
        return str(start), request, fake.arrivals, proxy.seen

    message, reject, arrivals, seen = with_proxy(test)
    assert re.fullmatch(r"cannot reach http://llm\.internal:\d+/v1/? \(is the server running\?\)", message)
    assert reject.reason == "backend_error" and "\n" not in reject.detail
    assert reject.detail.startswith("ClientConnector") and reject.detail.endswith("after 1 retries")
    assert arrivals == 0 and seen == []


@pytest.mark.parametrize(("no_proxy", "proxied"), [("llm.internal", False), (".internal", False),
                                                   ("*", False), ("other.internal,example.com", True)])
def test_no_proxy_sends_covered_hosts_direct(proxy_env, no_proxy, proxied):
    async def test(fake, proxy):
        proxy_env(HTTP_PROXY=proxy.url, NO_PROXY=no_proxy)
        backend = backend_for(f"http://llm.internal:{fake.port}/v1", max_retries=0)
        try:
            if proxied:
                await backend.start()
                return (await backend.complete(CHAT)).text, proxy.seen
            with pytest.raises(BackendError, match=r"cannot reach http://llm\.internal:\d+/v1/? \(is the server"):
                await backend.start()  # direct, where the name means nothing
            with pytest.raises(Reject, match="ClientConnector"):
                await backend.complete(CHAT)
            return None, proxy.seen
        finally:
            await backend.aclose()

    text, seen = with_proxy(test)
    assert (text, len(seen)) == (("fine", 2) if proxied else (None, 0))


def test_loopback_is_never_sent_to_the_proxy(proxy_env):
    async def test(fake, proxy):
        proxy_env(HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url)
        backend = backend_for(fake.url)
        try:
            await backend.start()
            return (await backend.complete(CHAT)).text, proxy.seen
        finally:
            await backend.aclose()

    assert with_proxy(test) == ("fine", [])


def test_proxy_credentials_are_sent_and_kept_out_of_errors(proxy_env):
    async def test(fake, proxy, password):
        proxy_env(HTTP_PROXY=proxy.url.replace("://", f"://alice:{password}@"))
        return await start_and_ask(f"http://llm.internal:{fake.port}/v1", max_retries=0)

    assert with_proxy(lambda fake, proxy: test(fake, proxy, "s3cret"), credentials="alice:s3cret") == "fine"
    with pytest.raises(BackendError) as refused:
        with_proxy(lambda fake, proxy: test(fake, proxy, "wrong-pw"), credentials="alice:s3cret")
    assert re.fullmatch(r"http://llm\.internal:\d+/v1/?/models answered 407 through the proxy http://127\.0\.0\.1:\d+",
                        str(refused.value))


def test_a_netrc_entry_does_not_clash_with_the_api_key(proxy_env, tmp_path, monkeypatch):
    # aiohttp reading the environment itself (trust_env) would take this entry and refuse the Authorization header
    netrc = tmp_path / "netrc"
    netrc.write_text("default login anonymous password guest\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    async def test(fake, proxy):
        proxy_env(HTTP_PROXY=proxy.url)
        return await start_and_ask(f"http://llm.internal:{fake.port}/v1", max_retries=0)

    assert with_proxy(test) == "fine"


@pytest.mark.parametrize(("script", "options", "outcome"), [
    ([("status", 429, {"Retry-After": "0"}), ("status", 500), ("status", 503)], {"retry_backoff": 0.01}, ("fine", 3)),
    ([("raw", b"{not json")], {"retry_backoff": 0.01}, ("fine", 1)),
    ([("status", 400)], {}, "request_rejected"),
    ([("hang", 1), ("hang", 1)], {"max_retries": 1, "timeout": 0.3, "retry_backoff": 0.01},
     "backend_error: no answer within backend.timeout=0.3s after 1 retries"),
    ([("status", 401)], {}, BackendError),
])
def test_the_aiohttp_route_keeps_retries_timeouts_and_rejects(proxy_env, script, options, outcome):
    async def test(fake, proxy):
        proxy_env(HTTP_PROXY=proxy.url)
        backend = backend_for(f"http://llm.internal:{fake.port}/v1", **options)
        try:
            completion = await backend.complete(CHAT)
            return completion.text, backend.retries
        except Reject as reject:
            return f"{reject.reason}: {reject.detail}" if reject.reason == "backend_error" else reject.reason
        except BackendError:
            return BackendError
        finally:
            await backend.aclose()

    assert with_proxy(test, script=script) == outcome


# --- the real command line ------------------------------------------------------------------------------------

def test_lcsynth_generate_through_the_proxy_and_without_it(tmp_path, proxy_env):
    fake = FakeOpenAI(default=("ok", None), responder=answer).start_in_thread()
    proxy = ForwardProxy({"llm.internal": "127.0.0.1"}).start_in_thread()
    try:
        write_corpus(tmp_path, [doc_text(i) for i in range(3)])
        write_recipe(tmp_path, f"http://llm.internal:{fake.port}/v1")
        proxied = lcsynth("generate", "r.yaml", "-q", cwd=tmp_path, env={**os.environ, "HTTP_PROXY": proxy.url},
                          timeout=120)
        direct = lcsynth("generate", "r.yaml", "-q", "--set", "output.name=direct", cwd=tmp_path, timeout=60)
    finally:
        proxy.stop()
        fake.stop()
    assert proxied.returncode == 0, proxied.stderr
    assert len(read_jsonl(tmp_path / "out" / "run" / "sft-00000.jsonl")) == 3
    assert sum("/v1/chat/completions" in url for url in proxy.seen) == 3 == fake.arrivals
    assert direct.returncode == 2
    assert re.fullmatch(r"error: cannot reach http://llm\.internal:\d+/v1/? \(is the server running\?\)\n",
                        direct.stderr)


def test_the_model_is_asked_of_a_server_only_the_proxy_reaches(proxy_env):
    """A recipe without `backend.model` asks /models the way generation requests go: through the proxy."""
    async def test(fake, proxy):
        proxy_env(HTTP_PROXY=proxy.url)
        spec = BackendSpec(type="openai", base_url=f"http://llm.internal:{fake.port}/v1",
                           tokenizer=str(bundled_gguf()))
        view = await asyncio.to_thread(OpenAIBackend.planning_view, spec)
        direct = spec.model_copy(update={"base_url": fake.url})  # loopback: never through the proxy
        assert (await asyncio.to_thread(OpenAIBackend.planning_view, direct)).model_id == "openai:fake"
        proxy_env(NO_PROXY="llm.internal")
        with pytest.raises(ConfigError, match=r"^backend\.model: .*it cannot be reached"):
            await asyncio.to_thread(OpenAIBackend.planning_view, spec)
        return view.model_id, fake.port, proxy.seen

    model_id, port, seen = with_proxy(test)
    assert model_id == "openai:fake"
    assert seen == [f"http://llm.internal:{port}/v1/models"]
