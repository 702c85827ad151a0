"""Servers the tests start as subprocesses: a clean environment, a log file, a free loopback
port, and an end by their own PID (SIGTERM, then SIGKILL), never by name.

Every fixture that runs serve.py, a test app, gunicorn or the load tester's target builds on
these few functions, so they all start, wait and stop the same way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "serve.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a server: ours without WSAPP_* settings (the developer's shell
    must not leak into a test), the project on PYTHONPATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
          cwd: Path = ROOT, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen:
    """Start `argv` with clean_env(**env), its stdout and stderr appended to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), cwd=cwd, env=clean_env(**(env or {})), stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=preexec_fn)


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM (a graceful shutdown), SIGKILL after `timeout`; the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
    return proc.returncode


def kill(proc: subprocess.Popen | None) -> None:
    """SIGKILL: no goodbye to anyone, as in a crash."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)


def read_log(log_path: Path, tail: int | None = None) -> str:
    """The log so far ('' before it exists), or its last `tail` characters."""
    try:
        text = log_path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return text[-tail:] if tail else text


def wait_listening(proc: subprocess.Popen, port: int, log_path: Path,
                   timeout: float = 20.0) -> None:
    """Until 127.0.0.1:`port` accepts; AssertionError with the log if `proc` exits first or
    time runs out (and then the process is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n"
                                 f"{read_log(log_path, 4000)}")
        if port_open(port):
            return
        time.sleep(0.05)
    kill(proc)
    raise AssertionError(f"server did not listen within {timeout}s:\n{read_log(log_path, 4000)}")


def wait_for_log(log_path: Path, pattern: str, timeout: float = 10.0) -> re.Match:
    """The first match of `pattern` in the log, waiting for it to appear."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        match = regex.search(read_log(log_path))
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not in the log within {timeout}s:\n"
                                 f"{read_log(log_path, 4000)}")
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """The direct child processes of `pid` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(t) for t in (task / "children").read_text().split()]
    return out


def wait_children(pid: int, n: int, timeout: float = 30.0) -> list[int]:
    """The `n` child processes of `pid`, once it has exactly that many."""
    deadline = time.monotonic() + timeout
    while True:
        kids = children(pid)
        if len(kids) == n:
            return kids
        assert time.monotonic() < deadline, f"{len(kids)} child processes, expected {n}"
        time.sleep(0.1)
