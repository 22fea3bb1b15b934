"""The command line as a user runs it: a real `lcsynth` process."""

import json
import subprocess
import sys

import pytest

from lcsynth import __version__


def lcsynth(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_version_and_help():
    assert lcsynth("version").stdout.strip() == __version__
    out = lcsynth("--help").stdout
    assert "generate" in out and "corpus" in out and "version" in out


@pytest.mark.parametrize(("recipe_text", "message"), [
    (None, "error: missing.yaml: recipe file not found"),
    ("methods: [{name: x}]\nseed: 1: 2\n", "error: r.yaml:2: not valid YAML"),
    ("methods: [{name: longmagpie}]\noutputs: {}\n", "error: r.yaml: outputs: unknown key"),
    ("methods: [{name: magic}]\n", "error: methods.0.name: unknown method 'magic'"),
    ("methods: [{name: longmagpie}]\nbackend: {type: nope}\n", "error: backend.type: unknown backend 'nope'; known: "),
    ("methods: [{name: longmagpie}]\ncorpus: {type: jsonl, path: nope.jsonl}\n",
     "error: corpus.path: nope.jsonl does not exist"),
])
def test_user_mistakes_print_one_line_and_exit_2(tmp_path, recipe_text, message):
    name = "missing.yaml"
    if recipe_text is not None:
        name = "r.yaml"
        (tmp_path / name).write_text(recipe_text)
    result = lcsynth("generate", name, "-q")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message)


def test_bad_set_is_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text("methods: [{name: longmagpie}]\n")
    result = lcsynth("generate", "r.yaml", "--set", "limits")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --set 'limits': expected key=value, e.g. --set output.name=run1"


def test_corpus_demo_writes_jsonl(tmp_path):
    result = lcsynth("corpus", "demo", "--out", "corpus")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "corpus" / "demo.jsonl").read_text().splitlines()
    assert f"wrote {len(lines)} documents" in result.stderr
    first = json.loads(lines[0])
    assert first["id"] == "pydoc:argparse" and "ArgumentParser" in first["text"]


def test_reason_needs_retry_rejects(tmp_path):
    (tmp_path / "r.yaml").write_text("methods: [{name: longmagpie}]\n")
    result = lcsynth("generate", "r.yaml", "--reason", "no_question")
    assert result.returncode == 2 and result.stderr.strip() == "error: --reason goes with --retry-rejects"


@pytest.mark.parametrize(("args", "message"), [
    (["--address", "auto"], "error: --address go with --executor ray"),
    (["--num-replicas", "2", "--gpus-per-replica", "1"], "error: --num-replicas, --gpus-per-replica go with "
                                                         "--executor ray"),
    (["--executor", "dask"], "error: --executor: 'dask' is not local or ray"),
    (["--executor", "ray", "--batch-out", "b.jsonl"], "error: --batch-out goes with --executor local"),
    (["--executor", "ray", "--num-replicas", "0"], "error: --num-replicas: give at least 1"),
])
def test_executor_mistakes_are_one_line(tmp_path, args, message):
    (tmp_path / "r.yaml").write_text("methods: [{name: longmagpie}]\n")
    result = lcsynth("generate", "r.yaml", *args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message)


def test_executor_ray_without_ray_installed_names_the_extra(tmp_path):
    (tmp_path / "r.yaml").write_text("methods: [{name: longmagpie}]\n")
    blocked = ("import sys; sys.modules['ray'] = None; sys.argv = ['lcsynth', 'generate', 'r.yaml', '--executor', "
               "'ray']; from lcsynth.cli.app import main; main()")  # as if ray were not installed
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and not (tmp_path / "outputs").exists()
    assert result.stderr.strip() == ("error: --executor ray needs the 'ray' package: install it with "
                                     "pip install 'lcsynth[ray]'")
