"""The openai backend against a scripted loopback server (a fake): limits, retries, errors, request shapes."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from aiohttp import web
from fake_openai import FakeOpenAI

from lcsynth.backends.base import Request
from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.backends.openai_compat import OpenAIBackend, RetryAfterOrBackoff, retry_after_seconds
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError, Reject

CHAT = Request.chat([{"role": "user", "content": "hi"}], max_tokens=5, seed=1)


def backend_for(url, **options):
    spec = BackendSpec(type="openai", base_url=url, model="fake", tokenizer=str(bundled_gguf()), **options)
    return OpenAIBackend(spec)


def with_server(test, **server):
    async def main():
        async with FakeOpenAI(**server) as fake:
            return await test(fake)

    return asyncio.run(main())


def test_concurrency_limit_holds_at_the_server():
    async def test(fake):
        backend = backend_for(fake.url, max_concurrency=4)
        replies = await asyncio.gather(*(backend.complete(CHAT) for _ in range(40)))
        await backend.aclose()
        return replies

    fake = FakeOpenAI(delay=0.05)

    async def main():
        async with fake:
            return await test(fake)

    replies = asyncio.run(main())
    assert [r.text for r in replies] == ["fine"] * 40
    assert fake.arrivals == 40 and fake.max_active == 4


def test_transient_failures_are_retried_until_success():
    async def test(fake):
        backend = backend_for(fake.url)
        completion = await backend.complete(CHAT)
        await backend.aclose()
        return completion, backend.retries, fake.arrivals

    script = [("status", 429, {"Retry-After": "0"}), ("status", 500), ("status", 503), ("ok", "finally")]
    completion, retries, arrivals = with_server(test, script=script)
    assert (completion.text, completion.usage.completion_tokens) == ("finally", 2)
    assert (retries, arrivals) == (3, 4)


@pytest.mark.parametrize(("server", "options", "reason", "arrivals"), [
    ({"default": ("status", 400)}, {}, "request_rejected", 1),
    ({"default": ("status", 500)}, {"max_retries": 2}, "backend_error", 3),
    ({"default": ("hang", 3)}, {"max_retries": 1, "timeout": 0.3}, "backend_error", 2),
    ({"default": ("raw", b'{"choices": [{"message": {"content": "cut')}, {"max_retries": 2, "retry_backoff": 0.01},
     "backend_error", 3),
    ({"default": ("raw", b'{"error": "no choices here"}')}, {"max_retries": 1, "retry_backoff": 0.01},
     "backend_error", 2),
])
def test_failures_become_rejects_after_bounded_retries(server, options, reason, arrivals):
    async def test(fake):
        backend = backend_for(fake.url, **options)
        try:
            with pytest.raises(Reject) as caught:
                await backend.complete(CHAT)
        finally:
            await backend.aclose()
        return caught.value, fake.arrivals

    reject, seen = with_server(test, **server)
    assert reject.reason == reason and seen == arrivals


def test_a_garbled_reply_is_retried_and_a_good_one_then_used():
    async def test(fake):
        backend = backend_for(fake.url, retry_backoff=0.01)
        try:
            return await backend.complete(CHAT), backend.retries
        finally:
            await backend.aclose()

    completion, retries = with_server(test, script=[("raw", b"{not json"), ("status", 503)], default=("ok", "fine"))
    assert completion.text == "fine" and retries == 2


def test_retry_after_header_of_the_endpoint_sets_the_wait():
    async def test(fake):
        backend = backend_for(fake.url, retry_backoff=30)  # the backoff alone would wait far longer
        started = asyncio.get_running_loop().time()
        try:
            await backend.complete(CHAT)
        finally:
            await backend.aclose()
        return asyncio.get_running_loop().time() - started

    waited = with_server(test, script=[("status", 429, {"Retry-After": "0.3"})], default=("ok", "fine"))
    assert 0.3 <= waited < 20


def test_auth_failure_stops_the_run():
    async def test(fake):
        backend = backend_for(fake.url)
        with pytest.raises(BackendError, match="answered 401: injected 401"):
            await backend.complete(CHAT)
        await backend.aclose()

    with_server(test, default=("status", 401))


def test_retry_after_is_read_and_capped():
    def error(value):
        return SimpleNamespace(response=SimpleNamespace(headers={"retry-after": value} if value else {}))

    assert retry_after_seconds(error("7")) == 7.0
    assert retry_after_seconds(error("100000")) == 120.0
    assert 0 <= retry_after_seconds(error("Wed, 21 Oct 2015 07:28:00 GMT")) <= 0.0 + 1e-9
    assert retry_after_seconds(error(None)) is None
    state = SimpleNamespace(outcome=SimpleNamespace(exception=lambda: error("2.5")), attempt_number=1)
    assert RetryAfterOrBackoff()(state) == 2.5


@pytest.mark.parametrize(("mode", "key", "value"), [
    ("json_schema", "response_format", {"type": "json_schema", "json_schema": {"name": "output", "schema": {}}}),
    ("json_object", "response_format", {"type": "json_object", "schema": {}}),
    ("vllm", "structured_outputs", {"json": {}}),
])
def test_structured_output_is_sent_as_the_server_expects(mode, key, value):
    async def test(fake):
        backend = backend_for(fake.url, structured_output=mode)
        await backend.complete(Request.chat([{"role": "user", "content": "x"}], json_schema={}))
        await backend.complete(Request(prompt="raw text", max_tokens=3))
        await backend.aclose()
        return fake.bodies

    chat, raw = with_server(test)
    assert chat[key] == value and chat["messages"] == [{"role": "user", "content": "x"}]
    assert raw["prompt"] == "raw text" and "messages" not in raw and "response_format" not in raw


def test_start_checks_reachability_and_model_name():
    async def test(fake):
        wrong = backend_for(fake.url).__class__(BackendSpec(type="openai", base_url=fake.url, model="nope",
                                                            tokenizer=str(bundled_gguf())))
        with pytest.raises(BackendError, match=r"'nope' is not served by .* \(it serves: fake\)"):
            await wrong.start()
        await wrong.aclose()

    with_server(test)

    async def unreachable():
        backend = backend_for("http://127.0.0.1:9/v1")
        with pytest.raises(BackendError, match=r"cannot reach http://127.0.0.1:9/v1"):
            await backend.start()
        await backend.aclose()

    asyncio.run(unreachable())


def test_configuration_mistakes(monkeypatch):
    monkeypatch.delenv("LCSYNTH_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="environment variable LCSYNTH_TEST_KEY is not set"):
        backend_for("http://127.0.0.1:9/v1", api_key_env="LCSYNTH_TEST_KEY")
    with pytest.raises(ConfigError, match="backend.tokenizer"):
        OpenAIBackend(BackendSpec(type="openai", base_url="http://127.0.0.1:9/v1", model="m"))
    monkeypatch.setenv("LCSYNTH_TEST_KEY", "sk-test")
    backend = backend_for("http://127.0.0.1:9/v1", api_key_env="LCSYNTH_TEST_KEY")
    assert backend.client.api_key == "sk-test" and backend.context_length == 8192


@pytest.mark.parametrize("mode", ["json_schema", "vllm"])
def test_decoders_get_the_schema_without_patterns_and_outputs_are_checked_against_it_all(mode):
    """A decoder makes the whole string match a `pattern` (JSON Schema only asks for a match somewhere), so a
    question pattern like `\\?\\s*$` would force "?" alone: patterns stay out of what the server decodes with."""
    from lcsynth.prompts.schemas import load_schema

    schema = load_schema("verifiable_question")

    async def test(fake):
        backend = backend_for(fake.url, structured_output=mode)
        await backend.complete(Request.chat([{"role": "user", "content": "x"}], json_schema=schema))
        await backend.aclose()
        return fake.bodies

    (body,) = with_server(test)
    sent = json.dumps(body)
    assert '"pattern"' not in sent and '"minLength": 8' in sent and '"required": ["question"]' in sent
    assert schema["properties"]["question"]["pattern"]  # the template's own schema keeps it for validation


class TwoModels(FakeOpenAI):
    async def _models(self, request):
        return web.json_response({"object": "list", "data": [{"id": "a"}, {"id": "b"}]})


@pytest.mark.parametrize(("server", "spec", "message"), [
    (TwoModels, {"tokenizer": "t.gguf"}, r"^backend\.model: say which model to use \(.*: it serves a, b\)$"),
    (FakeOpenAI, {}, r"^backend\.tokenizer: .* cannot count tokens for lcsynth \(no /tokenize\); set it"),
    (None, {}, r"^backend\.model: say which model to use \(http://127\.0\.0\.1:9/v1: it cannot be reached\)$"),
])
def test_missing_model_or_tokenizer_the_server_cannot_give_names_the_key(server, spec, message):
    fake = server().start_in_thread() if server else None
    try:
        url = fake.url if fake else "http://127.0.0.1:9/v1"
        with pytest.raises(ConfigError, match=message):
            OpenAIBackend.planning_view(BackendSpec(type="openai", base_url=url, **spec))
    finally:
        if fake:
            fake.stop()
