"""Shared fixtures: real wsapp servers in subprocesses on free 127.0.0.1 ports, and the one
headless system Chromium the browser tests share.

A `ServerProcess` runs `serve.py` (or a test app script taking the same flags), logs to a
file the tests read, and is stopped by its PID: SIGTERM, then SIGKILL after a timeout. It also
exposes what /proc says about the process (open sockets, memory) for leak checks.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import feedsources
import pytest
import serverproc
import websocket
from redisproc import RedisServer
from serverproc import SERVE, free_port, port_open

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

_UPGRADE = re.compile(r"wsapp\.websocket\.handler: upgrade (\S+) ")
_CLOSE = re.compile(r"wsapp\.websocket\.handler: close (\S+) ")


class ServerProcess:
    """One server subprocess and its log."""

    def __init__(self, args: list[str], log_path: Path, *, script: Path = SERVE,
                 env: dict[str, str] | None = None, port_flag: bool = True) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.script = script
        self.env = dict(env or {})
        self.port_flag = port_flag
        self.port = int(self.env.get("WSAPP_PORT", "0"))
        self.proc: subprocess.Popen | None = None
        self.baseline_sockets = 0
        self._checked = 0  # log offset up to which assert_clean looked for tracebacks

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start and wait until the port accepts; retries if another process took the port."""
        for _ in range(3):
            argv = [sys.executable, str(self.script), "--host", "127.0.0.1"]
            if self.port_flag:
                self.port = free_port()
                argv += ["--port", str(self.port)]
            self.proc = serverproc.spawn(argv + self.args, self.log_path, env=self.env)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_open(self.port):
                    self.wait_for_log(r"listening on", 5)
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.stop()
                raise AssertionError(f"server did not listen in {timeout}s:\n{self.log()}")
            if "cannot listen" not in self.log() or not self.port_flag:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        raise AssertionError(f"no free port after 3 tries:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; the exit status."""
        return serverproc.stop(self.proc, timeout)

    def url(self, path: str = "/ws/echo") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    # -- the log ---------------------------------------------------------------------------

    def log(self) -> str:
        return serverproc.read_log(self.log_path)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """The first match of `pattern` in the log, waiting for it to appear."""
        return serverproc.wait_for_log(self.log_path, pattern, timeout)

    def mark(self) -> None:
        """Look for tracebacks only in what the log gets from now on."""
        self._checked = len(self.log())

    def unclosed(self) -> collections.Counter:
        """Peers with an "upgrade" line but no matching "close" line."""
        text = self.log()
        return (collections.Counter(_UPGRADE.findall(text))
                - collections.Counter(_CLOSE.findall(text)))

    # -- /proc -----------------------------------------------------------------------------

    def socket_count(self) -> int:
        """Open sockets (the listener plus connections): files the app opens lazily, such as
        a database, do not count."""
        count = 0
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                count += os.readlink(f"/proc/{self.pid}/fd/{fd}").startswith("socket:")
            except FileNotFoundError:  # closed while we looked
                pass
        return count

    def status_kb(self, field: str) -> int:
        """A kB figure from /proc/PID/status, e.g. VmRSS or VmHWM."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    # -- health ----------------------------------------------------------------------------

    def assert_echo(self, timeout: float = 2.0) -> None:
        """Another client (websocket-client) connects and gets its echo, each step answered
        within `timeout` seconds."""
        ws = websocket.create_connection(self.url(), timeout=timeout)
        try:
            ws.send("still alive?")
            assert ws.recv() == "still alive?"
        finally:
            ws.close(timeout=timeout)

    def record_baseline(self) -> None:
        """Warm up with one echo, then remember the open socket count once it settles."""
        self.assert_echo(timeout=5.0)
        deadline = time.monotonic() + 10
        while self.socket_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the echo's socket is on its way out
        self.baseline_sockets = self.socket_count()

    def assert_clean(self, timeout: float = 10.0) -> None:
        """Every upgraded connection logged its close, the open sockets are back to the
        baseline, and nothing logged a traceback since the last call."""
        deadline = time.monotonic() + timeout
        while True:
            sockets, unclosed = self.socket_count(), self.unclosed()
            if sockets <= self.baseline_sockets and not unclosed:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"leak: {sockets} sockets open (baseline {self.baseline_sockets}), "
                    f"unclosed {dict(unclosed)}\n{self.log()[-4000:]}")
            time.sleep(0.1)
        text = self.log()
        fresh, self._checked = text[self._checked:], len(text)
        assert "Traceback" not in fresh, fresh[-4000:]


class Launcher:
    """Starts servers and stops every one of them at the end of a fixture's scope."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: list[ServerProcess] = []

    def __call__(self, *args: str, script: Path = SERVE, env: dict[str, str] | None = None,
                 port_flag: bool = True, start: bool = True) -> ServerProcess:
        n = len(self.servers)
        # Anything the app stores goes to a scratch directory, never the working tree.
        env = {"WSAPP_DATA_DIR": str(self.log_dir / f"data-{n}"), **(env or {})}
        server = ServerProcess(list(args), self.log_dir / f"server-{n}.log", script=script,
                               env=env, port_flag=port_flag)
        self.servers.append(server)
        return server.start() if start else server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerProcess:
    """The default server (serve.py with default limits), shared by the whole session."""
    launcher = Launcher(tmp_path_factory.mktemp("session-server"))
    try:
        srv = launcher("--log-level", "INFO")
        srv.record_baseline()
        yield srv
    finally:
        launcher.stop_all()


@pytest.fixture
def start_server(tmp_path):
    """A factory: start_server("--max-connections", "3") -> a started ServerProcess."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory):
    """Like start_server, for servers shared by one test module."""
    launcher = Launcher(tmp_path_factory.mktemp("module-server"))
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the tests that do not kill it (each uses its own key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server for one test, which may kill and restart it."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def chromium_path() -> str | None:
    """The system Chromium, if there is one."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless system Chromium for the whole session (tests/e2e and tests/compat):
    Playwright's own browser downloads are never used, and a session can hold only one
    sync Playwright."""
    path = chromium_path()
    if path is None:
        pytest.skip("no system chromium (tests/run.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(params=feedsources.SOURCES)
def feed_source(request, redis_server):
    """A fresh Redis Stream, RabbitMQ queue or PostgreSQL outbox table, in turn; removed at
    the end (tests/feedsources.py)."""
    source = feedsources.open_source(request.param, redis_server.port)
    try:
        yield source
    finally:
        source.close()
