"""The examples run as a reader would run them — `python examples/<name>.py PORT` in a fresh
directory (their data goes to ./data there) — and are driven in the system Chromium."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serverproc
from e2e.conftest import browsers, shot  # noqa: F401 -- the browser tests' fixtures

EXAMPLES = serverproc.ROOT / "examples"


class Example:
    """One example app in a subprocess, stopped by its PID."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.script = EXAMPLES / f"{name}.py"
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.port = serverproc.free_port()
        self.proc = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Example:
        self.proc = serverproc.spawn([sys.executable, str(self.script), str(self.port)],
                                     self.log_path, cwd=self.workdir)
        serverproc.wait_listening(self.proc, self.port, self.log_path)
        # It says where to go, as its docstring promises.
        serverproc.wait_for_log(self.log_path, rf"open {self.base}/\n")
        return self

    def stop(self) -> None:
        serverproc.stop(self.proc)

    def log(self) -> str:
        return serverproc.read_log(self.log_path)


@pytest.fixture
def example(tmp_path) -> Iterator:
    """example("chat") -> the running example; every one started is stopped at the end, and
    none may have logged a traceback."""
    started: list[Example] = []

    def start(name: str) -> Example:
        started.append(Example(name, tmp_path).start())
        return started[-1]

    try:
        yield start
    finally:
        for ex in started:
            ex.stop()
    for ex in started:
        assert "Traceback" not in ex.log(), ex.log()[-4000:]
