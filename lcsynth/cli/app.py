"""The `lcsynth` command line: thin wrappers that parse arguments and call library functions."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from lcsynth.cli.cache import app as cache_app
from lcsynth.cli.export import check, export
from lcsynth.cli.hub import push
from lcsynth.cli.templates import app as templates_app
from lcsynth.cli.view import view
from lcsynth.errors import ConfigError, LcsynthError
from lcsynth.version import __version__

app = typer.Typer(
    help="Make long-context training data (SFT, DPO, GRPO, pretraining) from real long documents.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
corpus_app = typer.Typer(help="Build and inspect corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(templates_app, name="templates")
app.add_typer(cache_app, name="cache")
app.command()(export)
app.command()(check)
app.command()(push)
app.command()(view)
err = Console(stderr=True, soft_wrap=True)


@app.command()
def generate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/demo.yaml.")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe key: --set output.name=run1 --set limits.max_documents=10.")] = None,
    backend: Annotated[str | None, typer.Option(help="Backend type (llamacpp, openai, vllm); same as "
                                                     "--set backend.type=...")] = None,
    batch_out: Annotated[Path | None, typer.Option(help="Write uncached requests to this OpenAI batch JSONL file "
                                                        "instead of sending them.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard an unfinished run of this name instead of "
                                                         "resuming it (resuming is the default).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an unfinished run of this name (the default; "
                                                           "fails if the recipe changed).")] = False,
    retry_rejects: Annotated[bool, typer.Option(
        "--retry-rejects", help="Make the finished run again with its rejected units on new seeds (the rest "
        "replays from the cache).")] = False,
    reason: Annotated[list[str] | None, typer.Option("--reason", help="With --retry-rejects: only rejects of this "
                                                     "reason (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress (shown on stderr: live on a terminal, "
                                    "else a line every 5 s, $LCSYNTH_PROGRESS_SECONDS).")] = False,
    executor: Annotated[str, typer.Option(help="Where units run: local (this process) or ray (a Ray cluster; "
                                               "pip install 'lcsynth[ray]').")] = "local",
    address: Annotated[str | None, typer.Option(help="With --executor ray: the cluster (auto, ray://HOST:10001); "
                                                     "default: a new Ray instance on this machine.")] = None,
    num_replicas: Annotated[int | None, typer.Option(help="With --executor ray: replicas, each with its own "
                                                          "backend (default 1).")] = None,
    gpus_per_replica: Annotated[float | None, typer.Option(help="With --executor ray: GPUs per replica (vLLM's "
                                                                "tensor_parallel_size; default 0).")] = None,
    cpus_per_replica: Annotated[float | None, typer.Option(help="With --executor ray: CPUs per replica "
                                                                "(default 1).")] = None,
) -> None:
    """Run a recipe and write its dataset under output.root/output.name; an interrupted run resumes."""
    from lcsynth.config import load_recipe

    if fresh and resume:
        raise ConfigError("--fresh and --resume contradict each other; give one")
    ray_options = executor_options(executor, batch_out, address=address, num_replicas=num_replicas,
                                   gpus_per_replica=gpus_per_replica, cpus_per_replica=cpus_per_replica)
    overrides = [*(set_ or []), *([f"backend.type={backend}"] if backend else []),
                 *(["output.resume=false"] if fresh else [])]
    loaded = load_recipe(recipe, overrides)
    if reason and not retry_rejects:
        raise ConfigError("--reason goes with --retry-rejects")
    retry = (reason or []) if retry_rejects else None
    if ray_options is not None:
        from lcsynth.run.ray_executor import run_recipe_on_ray

        summary = run_recipe_on_ray(loaded, ray_options, show_progress=not quiet, retry_reasons=retry)
    else:
        from lcsynth.run.local import run_recipe

        summary = asyncio.run(run_recipe(loaded, show_progress=not quiet, batch_out=batch_out, retry_reasons=retry))
    if not quiet:
        from lcsynth.run.progress import summary_table

        err.print(summary_table(summary.manifest, summary.timings))
    rows = ", ".join(f"{n} {kind}" for kind, n in summary.rows.items()) or "no rows"
    rejects = sum(summary.rejects.values())
    waiting = batch_out is not None and summary.pending
    if not summary.rows and not waiting:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.rejects.items(), key=lambda i: -i[1]))
        err.print(Text.assemble(("error", "red"), f": the run produced no rows (rejects: {reasons or 'none'}); "
                                f"see {summary.run_dir / 'rejects.jsonl'}"), soft_wrap=True)
        raise typer.Exit(3)
    err.print(f"[green]done[/]: {rows}, {rejects} rejects → {summary.run_dir}")
    if waiting:
        err.print(f"{summary.pending} units wait on {summary.batch_requests} requests written to {batch_out}; "
                  f"after the batch job: lcsynth ingest {summary.run_dir} --batch-results RESULTS.jsonl, "
                  "then run this command again")


def executor_options(executor: str, batch_out: Path | None, **ray_settings: Any) -> Any:
    """The Ray options `--executor ray` and its settings give, or None for the local executor."""
    given = [f"--{name.replace('_', '-')}" for name, value in ray_settings.items() if value is not None]
    if executor == "local":
        if given:
            raise ConfigError(f"{', '.join(given)} go with --executor ray")
        return None
    if executor != "ray":
        raise ConfigError(f"--executor: '{executor}' is not local or ray")
    if batch_out is not None:
        raise ConfigError("--batch-out goes with --executor local: a batch round writes requests, it sends none")
    from lcsynth.run.ray_executor import RayOptions

    return RayOptions(**{name: value for name, value in ray_settings.items() if value is not None})


@corpus_app.command("demo")
def corpus_demo(
    out: Annotated[Path, typer.Option("--out", help="Folder to write demo.jsonl into.")] = Path("corpus"),
) -> None:
    """Write the demo corpus (pydoc pages of the standard library) as JSONL."""
    from lcsynth.corpus.demo import write_demo_corpus

    path = write_demo_corpus(out)
    lines = sum(1 for _ in path.open(encoding="utf-8"))
    err.print(f"wrote {lines} documents to {path}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")]) -> None:
    """Write (again) report.html and the token-length histograms of a finished run."""
    from lcsynth.out.report import write_report

    err.print(f"wrote {write_report(run_dir)}")


@app.command()
def ingest(
    run_dir: Annotated[Path, typer.Argument(help="The run folder a --batch-out round wrote.")],
    batch_results: Annotated[Path, typer.Option(help="The provider's batch output JSONL.")],
) -> None:
    """Read a batch job's results into the request cache, so the next generate continues from them."""
    import json

    from lcsynth.backends.batch import ingest_results
    from lcsynth.backends.cache import RequestCache
    from lcsynth.config import validate_recipe
    from lcsynth.errors import InputError

    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{run_dir}: no readable manifest.json (is this a run folder?)") from None
    recipe = validate_recipe(manifest["recipe"], f"{run_dir}/manifest.json")
    cache = RequestCache(recipe.cache_path())
    try:
        stored, failed = ingest_results(batch_results, cache, manifest["model"])
    finally:
        cache.close()
    err.print(f"stored {stored} results in {recipe.cache_path()}" + (f"; {failed} failed and will be asked "
              "again in the next round" if failed else ""))


@app.command("serve-local")
def serve_local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    model: Annotated[str | None, typer.Option(help="GGUF file; default the bundled SmolLM2.")] = None,
    context_length: Annotated[int, typer.Option(help="Context window in tokens.")] = 8192,
    alias: Annotated[str, typer.Option(help="Model name clients ask for.")] = "smollm2",
) -> None:
    """Serve a GGUF model as an OpenAI-compatible endpoint on 127.0.0.1 (llama.cpp, no GPU needed).

    The server ends with this command (SIGTERM, SIGINT, SIGHUP, or this command killed).
    """
    from lcsynth.backends.llamacpp import bundled_gguf, local_server_command
    from lcsynth.cli.supervise import run_supervised

    gguf = model or str(bundled_gguf())
    err.print(f"serving {gguf} as '{alias}' at http://127.0.0.1:{port}/v1 — in a recipe: backend: "
              f"{{type: openai, base_url: http://127.0.0.1:{port}/v1}} (model and tokenizer are asked of the server)")
    raise typer.Exit(run_supervised(local_server_command(port, gguf, context_length, alias)))


@app.command()
def version() -> None:
    """Print lcsynth's version."""
    print(__version__)


def main() -> None:
    """Console-script entry: user errors (and files that cannot be read or written) become one line, exit status 2."""
    try:
        app()
    except (LcsynthError, OSError) as exc:
        if os.environ.get("LCSYNTH_DEBUG"):
            raise
        from lcsynth.redaction import scrub

        message = str(exc) if isinstance(exc, LcsynthError) else f"{exc.filename or 'I/O'}: {exc.strerror or exc}"
        message = scrub(message)  # a server's error may quote the key it was given
        err.print(Text.assemble(("error", "red"), f": {message}"), soft_wrap=True)  # the message is not markup
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
