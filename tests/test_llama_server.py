"""The openai backend against a real llama.cpp server (`lcsynth serve-local`'s command) on 127.0.0.1."""

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lcsynth.backends.base import Request
from lcsynth.backends.llamacpp import bundled_gguf, local_server_command
from lcsynth.backends.openai_compat import OpenAIBackend
from lcsynth.config import BackendSpec
from lcsynth.prompts.schemas import validation_error

pytestmark = pytest.mark.model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    port = free_port()
    process = subprocess.Popen(local_server_command(port, context_length=4096), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("llama.cpp server did not start") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def make_backend(url, **options):
    return OpenAIBackend(BackendSpec(type="openai", base_url=url, model="smollm2", tokenizer=str(bundled_gguf()),
                                     **options))


def test_chat_raw_and_structured_output(server_url):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
              "required": ["city"], "additionalProperties": False}

    async def main():
        backend = make_backend(server_url, structured_output="json_object")
        await backend.start()
        chat = await backend.complete(Request.chat([{"role": "user", "content": "Say hi."}], max_tokens=12, seed=1))
        prompt = backend.chat_template.self_query_prompt([{"role": "system", "content": "The json module."}])
        raw = await backend.complete(Request(prompt=prompt, max_tokens=24, seed=2, stop=("\n",)))
        shaped = await backend.complete(Request.chat([{"role": "user", "content": "Name a city as JSON."}],
                                                     max_tokens=40, seed=3, json_schema=schema))
        await backend.aclose()
        return chat, raw, shaped

    chat, raw, shaped = asyncio.run(main())
    assert chat.text.strip() and chat.usage.prompt_tokens > 0
    assert raw.text.strip() and "\n" not in raw.text
    assert validation_error(json.loads(shaped.text), schema) is None


SMALL = ["--set", "limits.max_documents=2", "--set", "limits.max_records=null", "--set", "output.root=runs",
         "--set", "methods.0.samples_per_document=2", "--set", "methods.0.answer_max_tokens=64",
         "--set", "methods.0.query_filter=first_line", "--set", "methods.0.keep_truncated_answers=true",
         "--set", "context.max_document_tokens=256", "--set", "backend.context_length=4096"]


def generate(recipe, *extra):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", "generate", str(recipe), "-q", *SMALL, *extra],
                          capture_output=True, text=True, timeout=600)


def test_same_recipe_runs_on_llamacpp_and_openai_with_rows_of_the_same_shape(server_url, tmp_path, request):
    recipe = request.config.rootpath / "recipes" / "demo.yaml"
    local = generate(recipe, "--set", "output.name=local")
    remote = generate(recipe, "--set", "output.name=remote", "--backend", "openai",
                      "--set", f"backend.base_url={server_url}", "--set", "backend.model=smollm2",
                      "--set", f"backend.tokenizer={bundled_gguf()}")
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr

    def shapes(name):
        rows = [json.loads(line) for line in (tmp_path / "runs" / name / "sft-00000.jsonl").read_text().splitlines()]
        return {(tuple(row), tuple(m["role"] for m in row["messages"]), tuple(sorted(row["meta"]))) for row in rows}

    assert shapes("local") and shapes("local") == shapes("remote")


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "backend.model=nope"], "error: backend.model: 'nope' is not served by"),
    (["--set", "backend.base_url=http://127.0.0.1:9/v1"], "error: cannot reach http://127.0.0.1:9/v1"),
    (["--set", "backend.api_key_env=LCSYNTH_UNSET_KEY"], "error: backend.api_key_env: environment variable"),
])
def test_endpoint_mistakes_are_one_line(server_url, tmp_path, request, extra, message):
    recipe = request.config.rootpath / "recipes" / "demo.yaml"
    result = generate(recipe, "--backend", "openai", "--set", f"backend.base_url={server_url}",
                      "--set", "backend.model=smollm2", "--set", f"backend.tokenizer={bundled_gguf()}", *extra)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message)


def test_serve_local_command_serves_the_bundled_model(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "lcsynth.cli", "serve-local", "--port", str(port),
                                "--context-length", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                models = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read())
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "serve-local did not start"
                time.sleep(0.3)
        assert [m["id"] for m in models["data"]] == ["smollm2"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_model_and_tokenizer_default_to_what_the_server_serves(server_url, tmp_path, request):
    recipe = request.config.rootpath / "recipes" / "demo.yaml"
    given = generate(recipe, "--set", "output.name=given", "--backend", "openai", "--set",
                     f"backend.base_url={server_url}", "--set", "backend.model=smollm2",
                     "--set", f"backend.tokenizer={bundled_gguf()}")
    asked = generate(recipe, "--set", "output.name=asked", "--backend", "openai", "--set",
                     f"backend.base_url={server_url}")
    assert given.returncode == 0, given.stderr
    assert asked.returncode == 0, asked.stderr
    manifests = [json.loads((tmp_path / "runs" / name / "manifest.json").read_text()) for name in ("given", "asked")]
    assert manifests[1]["model"] == manifests[0]["model"] == "openai:smollm2"
    rows = [[json.loads(line) for line in (tmp_path / "runs" / name / "sft-00000.jsonl").read_text().splitlines()]
            for name in ("given", "asked")]
    for row in rows[0] + rows[1]:
        row["meta"].pop("recipe_hash")  # the recipes differ in the keys left out
    assert rows[0] and rows[0] == rows[1]  # the same tokens counted, the same template: the same rows


def test_the_servers_tokenize_counts_as_the_gguf_does(server_url, smol_tokenizer):
    from lcsynth.backends.discovery import served_models, served_tokenizer

    models = served_models(server_url, {})
    tokenizer = served_tokenizer(server_url, "smollm2", models, {})
    text = "The json module encodes <|im_start|> objects; naïve café 😀 \n\n  def f(x): return x"
    assert tokenizer.encode(text) == smol_tokenizer.encode(text)
    assert tokenizer.decode(smol_tokenizer.encode("hello world")) == "hello world"
    assert tokenizer.metadata["tokenizer.chat_template"] == smol_tokenizer.metadata["tokenizer.chat_template"]
