"""`lcsynth view`: the page and its JSON API on 127.0.0.1 (aiohttp), and the same page written as static files.

The page asks for lines by id (`<file>:<line>`), which must name a line the index holds: no request names a
path, so nothing outside the run folder can be served. The index follows the run while it is written.
"""

from __future__ import annotations

import asyncio
import json
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from lcsynth.errors import InputError
from lcsynth.view.index import RunIndex
from lcsynth.view.query import Filter, entry, select
from lcsynth.view.spans import laid_out, reject_laid_out

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
REFRESH_SECONDS = 1.0


def static_text(name: str) -> str:
    """One of the page's own files, from the package."""
    return resources.files("lcsynth.view").joinpath("static", name).read_text(encoding="utf-8")


def open_run(run_dir: Path) -> RunIndex:
    """The index of a run folder, or a one-line error when it is none."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    index = RunIndex(run_dir)
    if not index._found() and not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: no rows, rejects or manifest.json here (is this a run folder?)")
    return index


def line_of(index: RunIndex, line_id: str) -> dict[str, Any]:
    """The laid-out row or reject with id `file:line`; KeyError when the index has no such line."""
    name, _, number = line_id.rpartition(":")
    if not number.isdigit():
        raise KeyError(line_id)
    with index.lock:
        file = index.files[name]  # KeyError for any name the index does not hold, a path included
        if int(number) >= len(file.offsets):
            raise KeyError(line_id)
    record = json.loads(index.read(name, int(number)))
    shown = reject_laid_out(record) if file.kind == "reject" else laid_out(file.kind, record)
    return {"id": line_id, **entry(index, name, int(number)), **shown}


def summary(index: RunIndex) -> dict[str, Any]:
    """The index's counts, the run's name and whether it has finished (a manifest without a checkpoint)."""
    finished = (index.run_dir / "manifest.json").exists() and not (index.run_dir / "checkpoint.json").exists()
    return {"run": index.run_dir.name, "finished": finished, **index.summary()}


class Refresher:
    """Re-indexes the run every second in a thread, until stopped."""

    def __init__(self, index: RunIndex) -> None:
        self.index, self._stop = index, threading.Event()
        self._thread = threading.Thread(target=self._run, name="lcsynth-view-index", daemon=True)

    def start(self) -> None:
        """Index what is there now in the background and keep following it."""
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.index.refresh()
            if self._stop.wait(REFRESH_SECONDS):
                return

    def stop(self) -> None:
        """Stop following the run."""
        self._stop.set()
        self._thread.join()


def make_app(index: RunIndex) -> web.Application:
    """The viewer's aiohttp application over an index (its refreshing is the caller's)."""

    async def page(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name == "data.js":  # an export's data; served, the page asks the API instead
            return web.Response(text="LCSYNTH_DATA = null;\n", content_type="text/javascript")
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(text=static_text(name), content_type=STATIC[name])

    async def api_summary(request: web.Request) -> web.Response:
        return web.json_response(summary(index))

    async def api_rows(request: web.Request) -> web.Response:
        query = request.query
        offset, limit = _int(query.get("offset"), 0), min(_int(query.get("limit"), 50), 500)
        found = await asyncio.to_thread(select, index, Filter.from_query(query), offset, limit)
        return web.json_response(found)

    async def api_row(request: web.Request) -> web.Response:
        try:
            shown = await asyncio.to_thread(line_of, index, request.query.get("id", ""))
        except (KeyError, IndexError, ValueError):
            raise web.HTTPNotFound() from None
        return web.json_response(shown)

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/{name}", page)
    app.router.add_get("/api/summary", api_summary)
    app.router.add_get("/api/rows", api_rows)
    app.router.add_get("/api/row", api_row)
    return app


def _int(value: str | None, default: int) -> int:
    try:
        return max(int(value), 0) if value else default
    except ValueError:
        return default


def serve(run_dir: Path, port: int, on_ready: Any = None) -> None:
    """Serve the viewer on 127.0.0.1:`port` until interrupted (port 0: any free port)."""
    index = open_run(run_dir)
    refresher = Refresher(index)  # the page opens at once and fills as lines are indexed
    refresher.start()

    async def main() -> None:
        runner = web.AppRunner(make_app(index), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as exc:
            raise InputError(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror})") from None
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if on_ready:
            on_ready(f"http://127.0.0.1:{bound}/")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        refresher.stop()


def export(run_dir: Path, out: Path, max_rows: int) -> int:
    """Write the page and up to `max_rows` lines (rows, then rejects) as static files; returns how many."""
    index = open_run(run_dir)
    index.refresh()
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows").mkdir(exist_ok=True)
    for name in STATIC:
        (out / name).write_text(static_text(name), encoding="utf-8")
    found = select(index, Filter(), 0, max_rows)["rows"]
    for number, item in enumerate(found):
        item["file"] = f"rows/{number}.js"
        shown = line_of(index, item["id"])
        (out / item["file"]).write_text(f"LCSYNTH_ROW({_script_json(shown)});\n", encoding="utf-8")
    data = {"summary": summary(index), "rows": found}
    (out / "data.js").write_text(f"LCSYNTH_DATA = {_script_json(data)};\n", encoding="utf-8")
    return len(found)


def _script_json(value: Any) -> str:
    """JSON safe inside a script file or tag (no `</script>`, no line separators JavaScript rejects)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
