"""Fixtures of the compatibility suite: every app runs once per handler (gevent-websocket's
own, the control, and wsapp's) and per server (gevent's WSGIServer, gunicorn), each in a
subprocess on a free 127.0.0.1 port, shared by the session and replaced when a test left
it unable to answer.

Every test passes on both handlers: the strict-xfail table of wsapp's gaps (issue 11) that
this suite started with emptied as compatibility landed, and was removed with its last
entry. A difference wsapp keeps on purpose is a fix, asserted as such where a test meets it
and listed in docs/compat.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .appserver import AppServer, ServerPool

ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = ROOT / ".cache" / "npm"  # git-ignored
SOCKETIO_CLIENT = ("socket.io-client", "4.8.4")
SOCKETIO_JS = NPM_PREFIX / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

HANDLERS = ("stock", "wsapp")
# (handler, server) pairs every third-party app runs under
HANDLER_SERVERS = [pytest.param((h, s), id=f"{h}-{s}")
                   for h in HANDLERS for s in ("pywsgi", "gunicorn")]


@pytest.fixture(scope="session")
def pool(tmp_path_factory) -> Iterator[ServerPool]:
    servers = ServerPool(tmp_path_factory.mktemp("compat"),
                         env={"COMPAT_SOCKETIO_JS": str(SOCKETIO_JS)})
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for fixtures to see how the test went."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def serve(request: pytest.FixtureRequest, pool: ServerPool, app: str, handler: str,
          server: str, *extra: str) -> Iterator[AppServer]:
    """The pool's server for this app. After the test it is killed if it stopped
    answering, and a passed test fails if the server logged a traceback meanwhile."""
    srv = pool.get(app, handler, server, *extra)
    srv.new_log()
    try:
        yield srv
    finally:
        call = getattr(request.node, "report_call", None)
        pool.check(srv, passed=call is not None and call.passed)


@pytest.fixture(scope="session")
def socketio_js() -> Path:
    """The socket.io browser client from the npm registry, installed once into .cache/."""
    name, version = SOCKETIO_CLIENT
    manifest = NPM_PREFIX / "node_modules" / name / "package.json"
    installed = json.loads(manifest.read_text())["version"] if manifest.exists() else None
    if installed != version or not SOCKETIO_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is needed to fetch the socket.io client")
        subprocess.run([npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund",
                        "--no-save", f"{name}@{version}"], check=True, timeout=300,
                       capture_output=True)
    return SOCKETIO_JS
