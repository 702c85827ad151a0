"""Fixtures for the load-tester tests: a real `serve.py` on a free port, and helpers to run
`python -m wsapp.loadtest` against it and read its JSON report.

Set WSAPP_LOADTEST_URL=ws://host:port to aim the tests at a server that is already running.
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


@pytest.fixture(scope="session")
def lt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (ws://127.0.0.1:PORT) of a real server for the whole session."""
    external = os.environ.get("WSAPP_LOADTEST_URL")
    if external:
        yield external.rstrip("/")
        return
    port = serverproc.free_port()
    home = tmp_path_factory.mktemp("lt_server")
    log = home / "serve.log"
    # Its own data dir, so the token secret and store do not land in the work tree.
    proc = serverproc.spawn([sys.executable, str(serverproc.SERVE), "--port", str(port),
                             "--data-dir", str(home / "data")], log)
    try:
        serverproc.wait_listening(proc, port, log)
        yield f"ws://127.0.0.1:{port}"
    finally:
        serverproc.stop(proc)


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
    out: str
    report: dict[str, Any] | None


def _run_loadtest(args: list[str], tmp_path: Path, *, timeout: float = 120,
                  preexec: Any = None) -> Run:
    """Run the CLI in a subprocess with --json (and --plot) into tmp_path; return the result."""
    report_path = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "wsapp.loadtest", *args, "--quiet",
           "--json", str(report_path)]
    proc = subprocess.run(cmd, cwd=serverproc.ROOT, env=serverproc.clean_env(),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return Run(proc.returncode, proc.stdout + proc.stderr, report)


@pytest.fixture
def run_loadtest() -> Any:
    """The function that runs the CLI: run_loadtest(args, tmp_path, preexec=None) -> Run."""
    return _run_loadtest


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return serverproc.free_port()
