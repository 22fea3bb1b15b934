"""`lcsynth serve-local` takes its llama.cpp server down with it, whichever signal stops it."""

import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from processes import alive, children, port_free
from test_llama_server import free_port

pytestmark = pytest.mark.model


def wait_until(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def serving(port: int, process: subprocess.Popen) -> bool:
    assert process.poll() is None, "serve-local ended before serving"
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
        return True
    except OSError:
        return False


def start_serve_local() -> tuple[subprocess.Popen, int, int]:
    """serve-local on a free port, once it answers: the command, its port and its one child (the server)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "lcsynth.cli", "serve-local", "--port", str(port),
                                "--context-length", "512"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: serving(port, process), 90, "serve-local did not start")
        (server,) = children(process.pid)
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        raise
    return process, port, server


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_the_server_ends_with_the_command(signum):
    process, port, server = start_serve_local()
    try:
        process.send_signal(signum)
        assert process.wait(timeout=30) == 128 + signum
        wait_until(lambda: not alive(server), 10, f"the server (pid {server}) outlived serve-local")
        wait_until(lambda: port_free(port), 10, f"port {port} still taken")
    finally:
        for pid in (process.pid, server):
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
        process.wait(timeout=10)


def test_the_server_ends_when_the_command_is_killed():
    process, _, server = start_serve_local()
    try:
        process.kill()
        process.wait(timeout=10)
        wait_until(lambda: not alive(server), 10, f"the server (pid {server}) outlived a killed serve-local")
    finally:
        if alive(server):
            subprocess.run(["kill", "-9", str(server)], check=False)
