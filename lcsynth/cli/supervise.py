"""Run a child process that ends with its parent: signals are passed on, and a killed parent takes it down."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to send the child SIGTERM when its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the signal handlers below still cover every stop but kill -9


def run_supervised(command: Sequence[str], grace: float = 10.0) -> int:
    """Run `command` to its end and return its exit status; SIGTERM, SIGINT or SIGHUP to us ends it first.

    The child gets SIGTERM, then SIGKILL if it has not ended within `grace` seconds; a stop by signal
    returns 128 + the signal's number, as a shell reports it.
    """
    child = subprocess.Popen(list(command), preexec_fn=_die_with_parent)  # prctl runs in the child
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if child.poll() is None:
            child.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in FORWARDED}
    try:
        status = _wait(child, received, grace)
        return 128 + received[0] if received else status
    finally:
        if child.poll() is None:  # we are leaving by an exception of our own
            child.kill()
            child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(child: subprocess.Popen[bytes], received: list[int], grace: float) -> int:
    """The child's exit status; once a signal came, SIGKILL after `grace` seconds if it has not ended."""
    stopping_since: float | None = None
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if received and stopping_since is None:
                stopping_since = time.monotonic()
            if stopping_since is not None and time.monotonic() - stopping_since > grace:
                child.kill()
