"""One compat app served in a subprocess on a free 127.0.0.1 port, by serve_app.py
(`pywsgi`, `wsserver`, `wsappserver`) or by gunicorn with gevent-websocket's or wsapp's worker.

Besides start and stop (by PID, via tests/serverproc.py) it answers what the tests ask the
process: the events the app recorded (GET /_events), whether it still answers at all, and
how much CPU the serving process used (from /proc, so a greenlet spinning in a loop that
never yields shows even though the process answers nothing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import serverproc

from .serve_app import APPS, WORKERS

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


class AppServer:
    """`app` ("module:attr" in apps/) under `handler` (stock|wsapp) and `server`
    (pywsgi|wsserver|wsappserver|gunicorn)."""

    def __init__(self, app: str, handler: str, server: str, workdir: Path,
                 extra: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.app, self.handler, self.server = app, handler, server
        self.extra = list(extra or [])
        self.env = dict(env or {})
        self.log_path = workdir / f"{app.replace(':', '-')}-{handler}-{server}.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.pid = 0  # the process serving requests (gunicorn's worker)
        self._checked = 0  # log offset up to which new_tracebacks() looked

    def argv(self) -> list[str]:
        if self.server == "gunicorn":
            return [sys.executable, "-m", "gunicorn", "-k", WORKERS[self.handler], "-w", "1",
                    "-b", f"127.0.0.1:{self.port}", "--pythonpath", str(APPS),
                    "--graceful-timeout", "2", "--log-level", "warning",
                    # gunicorn 27's control socket is one path per user: never share it
                    "--no-control-socket", self.app]
        return [sys.executable, str(HERE / "serve_app.py"), self.app, "--handler",
                self.handler, "--server", self.server, "--port", str(self.port), *self.extra]

    def start(self, timeout: float = 20.0) -> AppServer:
        """Start and wait until the app answers GET /_events (retried on a port clash)."""
        for _ in range(3):
            self.port = serverproc.free_port()
            self.proc = serverproc.spawn(self.argv(), self.log_path, env=self.env)
            try:
                serverproc.wait_listening(self.proc, self.port, self.log_path, timeout)
            except AssertionError:
                if "Address already in use" in self.log():
                    continue
                raise
            self.pid = self.get_json("/_events", timeout=timeout)["pid"]
            return self
        raise AssertionError(f"no free port after 3 tries:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (gunicorn stops its worker), then SIGKILL; a worker that is still there
        afterwards (a spinning one ignores signals) is killed by its PID."""
        serverproc.stop(self.proc, timeout=6.0)
        if self.pid and self.proc is not None and self.pid != self.proc.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """For a server that stopped answering: its worker first, so the arbiter need not
        wait for it."""
        if self.pid and self.proc is not None and self.pid != self.proc.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- asking the app --------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def get_json(self, path: str, timeout: float = 2.0) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:
            return json.load(resp)

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether the app still answers an HTTP request within `timeout` seconds."""
        try:
            self.get_json("/_events", timeout=timeout)
        except OSError:
            return False
        return True

    def events(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Recorded events of `kind` whose fields equal `match`."""
        try:
            found = self.get_json("/_events")["events"]
        except OSError as exc:
            raise AssertionError(f"the server stopped answering (GET /_events: {exc}); "
                                 f"it used {self.cpu_used(0.5) * 200:.0f}% CPU") from None
        return [e for e in found if (kind is None or e["kind"] == kind)
                and all(e.get(k) == v for k, v in match.items())]

    def wait_events(self, kind: str, count: int = 1, timeout: float = 3.0,
                    **match: Any) -> list[dict[str, Any]]:
        """Wait until `count` events match; AssertionError with what was seen if not."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(kind, **match)
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) >= count, (f"{count} {kind!r} event(s) matching {match} expected "
                                     f"within {timeout}s, got {found}")
        return found

    def cpu_seconds(self) -> float:
        """utime + stime of the serving process."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def cpu_used(self, seconds: float = 1.0) -> float:
        """CPU-seconds the serving process used over the next `seconds`."""
        before = self.cpu_seconds()
        time.sleep(seconds)
        return self.cpu_seconds() - before

    def log(self) -> str:
        return serverproc.read_log(self.log_path, 6000)

    def new_log(self) -> str:
        """What the log got since the last call."""
        text = serverproc.read_log(self.log_path)
        fresh, self._checked = text[self._checked:], len(text)
        return fresh


class ServerPool:
    """Servers shared by the whole session, one per (app, handler, server, extra), started
    on first use. After each test, `check()` kills a server that stopped answering (wsapp
    spinning in a closed socket's receive() loop is one): the next test gets a fresh one."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = dict(env or {})
        self.servers: dict[tuple, AppServer] = {}

    def get(self, app: str, handler: str, server: str, *extra: str) -> AppServer:
        key = (app, handler, server, extra)
        srv = self.servers.get(key)
        if srv is None or not srv.alive():
            srv = AppServer(app, handler, server, self.workdir, list(extra), self.env)
            self.servers[key] = srv.start()
        return srv

    def check(self, srv: AppServer, passed: bool) -> None:
        """After a test: kill a server that stopped answering; fail a test that passed
        while the server logged a traceback (an app error the client did not see)."""
        if srv.alive() and not srv.healthy(timeout=1.0):
            srv.kill()
        fresh = srv.new_log()
        if passed:
            assert "Traceback" not in fresh, fresh[-4000:]

    def stop_all(self) -> None:
        """SIGTERM to all at once (gunicorn takes a moment to stop), then wait for each."""
        for srv in self.servers.values():
            if srv.alive():
                srv.proc.terminate()
        for srv in self.servers.values():
            srv.stop()
