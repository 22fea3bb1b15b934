"""A run folder's lifecycle: one process writes it at a time, and a finished run stays until a new one finishes.

The lock is `flock` on `.<name>.lock` beside the folder (beside, so the folder itself can be moved aside), held
for the whole run; the kernel drops it when its holder dies, so a killed run never blocks the next one. A fresh
run moves a finished run of the same name to `.<name>.previous`; when the new run finishes that copy is deleted,
and when it fails the copy comes back, so a failed run never replaces good output with part of a new one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lcsynth.errors import ConfigError, OutputError

CHECKPOINT = "checkpoint.json"
MANIFEST = "manifest.json"


def lock_path(run_dir: Path) -> Path:
    """The lock file of a run folder.

    >>> lock_path(Path("outputs/demo")).as_posix()
    'outputs/.demo.lock'
    """
    return run_dir.parent / f".{run_dir.name}.lock"


def previous_path(run_dir: Path) -> Path:
    """Where a finished run waits while a new run of the same name is made."""
    return run_dir.parent / f".{run_dir.name}.previous"


def lock_holders(path: Path) -> list[int]:
    """Process ids holding an flock on `path`, from /proc/locks (empty where the system has none)."""
    try:
        inode, lines = path.stat().st_ino, Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for fields in (line.split() for line in lines):  # "1: FLOCK ADVISORY WRITE 4242 fd:01:1234 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            pids.append(int(fields[4]))
    return pids


@contextmanager
def hold(run_dir: Path, shared: bool = False) -> Iterator[None]:
    """Hold a run folder's lock: exclusive to write it, shared to read it; a busy folder is a one-line error.

    A folder that is not there, or whose parent cannot be written, cannot be written by anyone else either:
    readers go on unlocked.
    """
    path = lock_path(run_dir)
    if shared and not run_dir.is_dir():
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:
        if not shared:
            raise OutputError(f"output: cannot write in {run_dir.parent} ({exc.strerror})") from None
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pids = lock_holders(path) or [handle.read().strip() or "unknown"]
            raise OutputError(f"output: {run_dir} is in use by another lcsynth process (pid "
                              f"{', '.join(map(str, pids))}); wait for it to finish or choose another output.name"
                              ) from None
        if not shared:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        yield


def clear(run_dir: Path, overwrite: bool) -> None:
    """Make way for a fresh run: a finished run is moved aside until the new one finishes, an unfinished one goes.

    A folder that holds no lcsynth run is never touched.
    """
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"output: {run_dir} already holds a run; choose another output.name or set overwrite")
        ours = (run_dir / MANIFEST).exists() or (run_dir / CHECKPOINT).exists()
        if not ours and not any(run_dir.glob("*.partial")):
            raise ConfigError(f"output: {run_dir} is not empty and holds no lcsynth run; refusing to clear it")
        if (run_dir / MANIFEST).exists():
            shutil.rmtree(previous_path(run_dir), ignore_errors=True)
            os.replace(run_dir, previous_path(run_dir))
        else:
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def finished(run_dir: Path) -> None:
    """The new run is complete: the finished run it replaced goes."""
    shutil.rmtree(previous_path(run_dir), ignore_errors=True)


def failed(run_dir: Path) -> None:
    """The run failed: the finished run it was replacing, if any, comes back in place of the partial one."""
    previous = previous_path(run_dir)
    if previous.is_dir():
        shutil.rmtree(run_dir, ignore_errors=True)
        os.replace(previous, run_dir)


def describe_os_error(exc: OSError, run_dir: Path) -> str:
    """One line for a failed write (or read): the file when known, else the run folder, and the system's reason.

    >>> describe_os_error(OSError(28, "No space left on device"), Path("out/run"))
    'output: writing out/run: No space left on device'
    """
    where = exc.filename if exc.filename else f"writing {run_dir}"
    return f"output: {where}: {exc.strerror or exc}"
