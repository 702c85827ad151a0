"""Fixtures for the load-tester tests: a real `serve.py` on a free port, and helpers to run
`python -m wsapp.loadtest` against it and read its JSON report.

Set WSAPP_LOADTEST_URL=ws://host:port to aim the tests at a server that is already running
(and WSAPP_LOADTEST_PID to its process id, for the server-CPU figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import serverproc

from wsapp.loadtest import client


@dataclass
class Served:
    """The server the load tester aims at: its base URL and, when known, its process id."""

    url: str
    pid: int | None


@pytest.fixture(scope="session")
def lt_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real server (ws://127.0.0.1:PORT, pid) for the whole session."""
    external = os.environ.get("WSAPP_LOADTEST_URL")
    if external:
        pid = os.environ.get("WSAPP_LOADTEST_PID")
        yield Served(external.rstrip("/"), int(pid) if pid else None)
        return
    port = serverproc.free_port()
    home = tmp_path_factory.mktemp("lt_server")
    log = home / "serve.log"
    # Its own data dir, so the token secret and store do not land in the work tree.
    proc = serverproc.spawn([sys.executable, str(serverproc.SERVE), "--port", str(port),
                             "--data-dir", str(home / "data")], log)
    try:
        serverproc.wait_listening(proc, port, log)
        yield Served(f"ws://127.0.0.1:{port}", proc.pid)
    finally:
        serverproc.stop(proc)


@pytest.fixture(scope="session")
def lt_server(lt_served: Served) -> str:
    """Base URL (ws://127.0.0.1:PORT) of the session's server."""
    return lt_served.url


@pytest.fixture
def server_pid(lt_served: Served) -> int:
    """The session server's process id (skips when aimed at a server of unknown pid)."""
    if lt_served.pid is None:
        pytest.skip("WSAPP_LOADTEST_URL without WSAPP_LOADTEST_PID: no server CPU to read")
    return lt_served.pid


@pytest.fixture
def ws_route(lt_server: str) -> str:
    """The live server's /ws; skips the test only when that route answers 404 (the room
    protocol is not there yet), so these tests turn on by themselves when it lands."""
    try:
        conn = client.connect(client.Target.parse(lt_server + "/ws"), timeout=10)
    except client.HandshakeRefused as exc:
        if exc.status_line.split(" ")[1:2] == ["404"]:
            pytest.skip("the server's /ws answers 404")
        return lt_server  # 401/403 and the like are for the test to report, not to skip
    conn.abort()
    return lt_server


@dataclass
class Run:
    """One finished `python -m wsapp.loadtest` run."""

    code: int
    out: str  # stdout then stderr
    report: dict[str, Any] | None
    stdout: str = ""


def _run_loadtest(args: list[str], tmp_path: Path, *, timeout: float = 120,
                  preexec: Any = None, quiet: bool = True) -> Run:
    """Run the CLI in a subprocess with --json into tmp_path; return the result.

    Its output is a pipe, as in CI: without `quiet` it prints the plain progress lines.
    """
    report_path = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "wsapp.loadtest", *args, "--json", str(report_path)]
    if quiet:
        cmd.append("--quiet")
    env = serverproc.clean_env()
    env.pop("COLUMNS", None)  # the width a CI log gets: rich's default for a pipe
    proc = subprocess.run(cmd, cwd=serverproc.ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return Run(proc.returncode, proc.stdout + proc.stderr, report, proc.stdout)


@pytest.fixture
def run_loadtest() -> Any:
    """The function that runs the CLI: run_loadtest(args, tmp_path, preexec=None,
    quiet=True) -> Run."""
    return _run_loadtest


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return serverproc.free_port()
