"""Each CPU benchmark runs in its quick mode and ends with a summary line carrying a finite ratio.

Timings are not checked (the machine may be busy): only that the benchmark runs and reports.
"""

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"ratio\s*[:=]?\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+|nan|inf))", re.IGNORECASE)


def run_bench(name: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "bench", name, "--quick"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def present(module: str) -> bool:
    return (REPO / "bench" / f"{module}.py").exists()


@pytest.mark.parametrize("name, module", [
    ("construct", "construct"),
    ("memory", "memory"),
    pytest.param("llamacpp", "llamacpp", marks=pytest.mark.model),
    ("endpoint", "endpoint"),
    ("ray", "ray_executor"),
])
def test_quick_benchmark_ends_with_a_finite_ratio(name, module):
    if not present(module):
        pytest.skip(f"bench/{module}.py is not there")
    if name == "ray" and importlib.util.find_spec("ray") is None:
        pytest.skip("needs ray (pip install 'lcsynth[ray]')")
    lines = [line for line in run_bench(name).splitlines() if line.strip()]
    last = lines[-1]
    assert last.startswith("summary:"), lines[-5:]
    found = RATIO.search(last)
    assert found and math.isfinite(float(found.group(1))), last
    assert len(lines) >= 3  # a table came before it


def test_without_a_name_the_benchmarks_are_listed():
    done = subprocess.run([sys.executable, "-m", "bench"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0
    for name in ("construct", "memory", "llamacpp", "endpoint", "ray", "vllm", "all"):
        assert re.search(rf"^\s+{name}\b", done.stdout, re.MULTILINE), done.stdout


def test_vllm_benchmark_summary_line_without_figures():
    spec = importlib.util.spec_from_file_location("vllm_gpu", REPO / "bench" / "vllm_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    line = module.summary_line({"throughput": {"ratio": 0.98}, "prefix_caching_longpo": "skipped: time budget spent",
                                "prefix_caching_longmagpie": {"speedup": 1.4}})
    assert line == ("summary: vllm backend/raw output tokens/s ratio 0.98 (target >= 0.95); prefix caching "
                    "speed-up: longmagpie 1.4x")
