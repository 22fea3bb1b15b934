"""Run lcsynth's benchmarks: `python -m bench [NAME|all] [--quick] [script options]`.

Every benchmark is a module of this folder with `main(argv)`; it measures its baseline in the same run, prints a
small table and, last, one line `summary: <what> ratio <number> (...)`. `all` runs the CPU benchmarks in turn
with `--quick` passed on if given; a benchmark whose module is not there is skipped with a note. Without a
name, the list is printed.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import traceback

# name -> (module, what it compares); `all` runs these, in this order
CPU = {
    "construct": ("bench.construct", "building long samples vs tokenizing their text once"),
    "memory": ("bench.memory", "peak RSS of `lcsynth generate` over 10x the corpus vs 1x"),
    "llamacpp": ("bench.llamacpp", "embedded llama.cpp backend (complete, run_recipe) vs llama_cpp.Llama directly"),
    "endpoint": ("bench.endpoint", "openai backend client vs raw aiohttp, the openai SDK, distilabel, curator"),
    "ray": ("bench.ray_executor", "the Ray executor (bench/ray_executor.py)"),
}
# run by name only
GPU = {"vllm": ("bench.vllm_gpu", "vllm backend vs LLM.generate; prefix caching on vs off (needs a GPU, --model)"),
       "quality": ("bench.quality.cli", "train SmolLM2-135M on lcsynth data vs controls, score on independent probes")}


class Tee(io.TextIOBase):
    """Passes writes to the real stdout and keeps the summary lines."""

    def __init__(self, out: io.TextIOBase) -> None:
        self.out, self.summaries, self._line = out, [], ""

    def write(self, text: str) -> int:
        self.out.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        self.summaries.extend(line for line in lines if line.startswith("summary:"))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def run_one(name: str, argv: list[str]) -> bool | None:
    """Run one benchmark in this process; True if it finished, False if it failed, None if it is absent."""
    module_name = {**CPU, **GPU}[name][0]
    if importlib.util.find_spec(module_name) is None:
        print(f"{name}: skipped ({module_name.replace('.', '/')}.py is not there)")
        return None
    print(f"== python -m bench {' '.join([name, *argv])}", flush=True)
    try:
        importlib.import_module(module_name).main(argv)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(f"{name}: exited with status {exc.code}")
            return False
    except Exception:  # noqa: BLE001 - one broken benchmark must not stop the others
        traceback.print_exc()
        print(f"{name}: failed")
        return False
    return True


def print_list() -> None:
    """The benchmarks and what each compares."""
    print(__doc__.splitlines()[0])
    for name, (module, what) in {**CPU, **GPU}.items():
        there = "" if importlib.util.find_spec(module) else "  (not there)"
        print(f"  {name:<10} {what}{there}")
    print("  all        every CPU benchmark above, in that order")


def main(argv: list[str]) -> int:
    """Dispatch to one benchmark or all of them; the exit status is 1 if any failed."""
    if not argv or argv[0] in ("-h", "--help", "list"):
        print_list()
        return 0
    name, rest = argv[0], argv[1:]
    if name == "all":
        tee = Tee(sys.stdout)
        sys.stdout = tee
        try:
            results = [run_one(n, [a for a in rest if a == "--quick"]) for n in CPU]
        finally:
            sys.stdout = tee.out
        print("\n".join(["== summaries", *tee.summaries]))
        return 1 if False in results else 0
    if name not in CPU and name not in GPU:
        print(f"unknown benchmark {name!r}; choose one of {', '.join([*CPU, *GPU, 'all'])}", file=sys.stderr)
        return 2
    return 1 if run_one(name, rest) is False else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
