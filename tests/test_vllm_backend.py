"""The vllm backend. GPU tests run only where vllm and a CUDA GPU exist (LCSYNTH_VLLM_MODEL names a model folder)."""

import asyncio
import importlib.util
import json
import os
import shutil

import pytest

from lcsynth.backends.base import Request
from lcsynth.config import BackendSpec
from lcsynth.corpus.demo import render_module
from lcsynth.errors import ConfigError, MissingExtra
from lcsynth.prompts.schemas import validation_error

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAVE_VLLM, reason="vllm is installed here, so the missing-extra message cannot show")
def test_without_vllm_the_error_says_how_to_install_it():
    from lcsynth.backends.vllm import VLLMBackend

    with pytest.raises(MissingExtra, match=r"pip install 'lcsynth\[vllm\]'"):
        VLLMBackend(BackendSpec(type="vllm", model="m"))


def test_engine_arguments_default_to_prefix_caching_and_take_recipe_options():
    from lcsynth.backends.vllm import engine_args

    args = engine_args(BackendSpec(type="vllm", model="m", context_length="32k",
                                   options={"enable_prefix_caching": False, "data_parallel_size": 2}))
    assert args["max_model_len"] == 32768 and args["data_parallel_size"] == 2
    assert args["enable_prefix_caching"] is False and args["model"] == "m"
    with pytest.raises(ConfigError, match="backend.model"):
        engine_args(BackendSpec(type="vllm"))


def gpu_ready() -> str | None:
    # no torch.cuda call here: initialising CUDA in the test process would break vLLM's forked engine
    if not HAVE_VLLM:
        return "needs the vllm package (pip install 'lcsynth[vllm]')"
    if shutil.which("nvidia-smi") is None:
        return "needs an NVIDIA GPU"
    if not os.environ.get("LCSYNTH_VLLM_MODEL"):
        return "set LCSYNTH_VLLM_MODEL to a local model folder"
    return None


@pytest.mark.skipif(gpu_ready() is not None, reason=gpu_ready() or "")
def test_vllm_on_gpu_chat_raw_structured_batched_and_scored():
    from lcsynth.backends.vllm import VLLMBackend

    schema = {"type": "object", "properties": {"question": {"type": "string", "maxLength": 80}},
              "required": ["question"], "additionalProperties": False}

    async def main():
        backend = VLLMBackend(BackendSpec(type="vllm", model=os.environ["LCSYNTH_VLLM_MODEL"], context_length=4096,
                                          options={"gpu_memory_utilization": 0.3, "enforce_eager": True}))
        try:
            chat = await backend.complete(Request.chat([{"role": "user", "content": "Say hi."}], max_tokens=16, seed=1))
            prompt = backend.chat_template.self_query_prompt([{"role": "system", "content": "The json module."}])
            raw = await backend.complete(Request(prompt=prompt, max_tokens=32, seed=2))
            shaped = await backend.complete(Request.chat([{"role": "user", "content": "Ask about Python as JSON."}],
                                                         max_tokens=64, seed=3, json_schema=schema))
            many = await asyncio.gather(*(backend.complete(Request(prompt=f"Item {i}:", max_tokens=8, seed=i))
                                          for i in range(64)))
            passage = backend.tokenizer.encode(render_module("json"))[:300]
            copy = passage + passage
            long = await backend.score(copy, 400)
            short = await backend.score(copy[336:], 64)
            return chat, raw, shaped, many, (long, short)
        finally:
            await backend.aclose()

    chat, raw, shaped, many, (long, short) = asyncio.run(main())
    assert chat.text.strip() and chat.usage.prompt_tokens > 0
    assert raw.text.strip()
    assert validation_error(json.loads(shaped.text), schema) is None
    assert len(many) == 64 and all(c.usage.completion_tokens > 0 for c in many)
    # prompt log-probs: the repeated half is far better predicted with the first half in view
    assert len(long) == len(short) == 200 and all(v <= 0 for v in long)
    assert sum(long) / 200 - sum(short) / 200 > 1.0


def test_a_prompt_sent_again_is_encoded_once_and_each_caller_gets_its_own_ids():
    from types import SimpleNamespace

    from lcsynth.backends.vllm import prompt_encoder
    from lcsynth.text.tokens import HFTokenizer

    calls = []

    def encode(text, add_special_tokens):
        calls.append(text)
        assert add_special_tokens is False
        return [len(word) for word in text.split()]

    tokenizer = HFTokenizer.__new__(HFTokenizer)  # its own encode, over a fake transformers tokenizer
    tokenizer.hf = SimpleNamespace(encode=encode)
    encode_prompt = prompt_encoder(tokenizer, remembered=2)
    first, again = encode_prompt("a long document"), encode_prompt("a long document")
    assert first == again == [1, 4, 8] and calls == ["a long document"]
    first.append(99)  # a caller changing its list does not change what the next one gets
    assert encode_prompt("a long document") == [1, 4, 8]
    encode_prompt("b"), encode_prompt("c")  # the oldest of more than `remembered` texts is forgotten
    encode_prompt("a long document")
    assert calls == ["a long document", "b", "c", "a long document"]
