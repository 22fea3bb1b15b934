"""The real embedded model (SmolLM2-135M via llama.cpp, in-process): backend contract and a small demo run."""

import asyncio
import json
import shutil
import subprocess
import sys

import pytest

from lcsynth.backends.base import Request
from lcsynth.backends.llamacpp import LlamaCppBackend, bundled_gguf
from lcsynth.config import BackendSpec
from lcsynth.errors import ConfigError, Reject
from lcsynth.prompts.schemas import validation_error

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend():
    instance = LlamaCppBackend.from_spec(BackendSpec(context_length=1024))
    yield instance
    asyncio.run(instance.aclose())


def test_bundled_model_is_found_without_download():
    path = bundled_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_chat_completion_has_text_usage_and_finish_reason(backend):
    request = Request.chat([{"role": "user", "content": "Say hello."}], max_tokens=16, seed=1, temperature=0)
    completion = asyncio.run(backend.complete(request))
    assert completion.text.strip()
    assert completion.finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 5 and 0 < completion.usage.completion_tokens <= 16
    assert backend.context_length == 1024 and backend.model_id.endswith(".gguf")


def test_json_schema_constrains_the_output(backend):
    schema = {"type": "object", "properties": {"question": {"type": "string", "maxLength": 40}},
              "required": ["question"], "additionalProperties": False}
    request = Request.chat([{"role": "user", "content": "Ask a question about Python as JSON."}],
                           max_tokens=60, seed=3, json_schema=schema)
    completion = asyncio.run(backend.complete(request))
    assert validation_error(json.loads(completion.text), schema) is None


def test_prompt_longer_than_the_context_is_a_reject(backend):
    with pytest.raises(Reject, match="context_overflow"):
        asyncio.run(backend.complete(Request(prompt="word " * 3000, max_tokens=4)))


def test_missing_gguf_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="GGUF file .*nope.gguf not found"):
        LlamaCppBackend.from_spec(BackendSpec(model=str(tmp_path / "nope.gguf")))


SMALL_DEMO = [
    "--set", "limits.max_documents=2", "--set", "limits.max_records=null",
    "--set", "methods.0.samples_per_document=4", "--set", "methods.0.answer_max_tokens=96",
    "--set", "methods.0.query_filter=first_line", "--set", "methods.0.keep_truncated_answers=true",
    "--set", "context.max_document_tokens=300", "--set", "output.root=runs", "--set", "output.name=x",
    "--set", "cache.enabled=false",  # the second run must generate again, not replay the first
]


def generate_demo(repo_recipe):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", "generate", str(repo_recipe), "-q", *SMALL_DEMO],
                          capture_output=True, text=True, timeout=600)


def test_demo_recipe_end_to_end_is_valid_and_byte_reproducible(tmp_path, request):
    recipe = request.config.rootpath / "recipes" / "demo.yaml"
    first = generate_demo(recipe)
    assert first.returncode == 0, first.stderr
    shutil.move(tmp_path / "runs" / "x", tmp_path / "first")
    second = generate_demo(recipe)
    assert second.returncode == 0, second.stderr

    run = tmp_path / "runs" / "x"
    for name in ("sft-00000.jsonl", "rejects.jsonl", "manifest.json"):
        assert (run / name).read_bytes() == (tmp_path / "first" / name).read_bytes(), name

    rows = [json.loads(line) for line in (run / "sft-00000.jsonl").read_text().splitlines()]
    rejects = (run / "rejects.jsonl").read_text().splitlines()
    manifest = json.loads((run / "manifest.json").read_text())
    assert rows, "the real model produced no row at all"
    assert len(rows) + len(rejects) == manifest["counts"]["units"] == 8
    from lcsynth.corpus.demo import iter_demo_documents
    sources = {doc.id: doc.text for doc in iter_demo_documents()}
    for row in rows:
        assert validation_error(row, "sft") is None
        user = row["messages"][0]["content"]
        document, query = user.rsplit("\n\n", 1)
        assert sources[row["meta"]["doc_id"]].startswith(document[:200])
        assert query.strip() and query not in sources[row["meta"]["doc_id"]]
        assert row["meta"]["document_tokens"] == 300
