"""Browser tests: the real serve.py on a free port, driven by the system Chromium.

The `browser` fixture (the system Chromium, never Playwright's own downloads) is in
tests/conftest.py, shared with tests/compat. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serverproc

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"


class Server:
    """serve.py in a subprocess; stopped (or killed) by its PID, restartable on its port."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.port = serverproc.free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "server.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str, timeout: float = 20.0) -> Server:
        """Start on self.port and wait until it accepts connections."""
        argv = [sys.executable, str(serverproc.SERVE), "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", str(self.workdir / "data"),
                *self.args, *extra]
        self.proc = serverproc.spawn(argv, self.log_path, cwd=self.workdir)
        serverproc.wait_listening(self.proc, self.port, self.log_path, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, as in a crash."""
        serverproc.kill(self.proc)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL if that takes too long."""
        serverproc.stop(self.proc)

    def log(self) -> str:
        return serverproc.read_log(self.log_path, 4000)


@pytest.fixture(scope="session")
def web(tmp_path_factory) -> Iterator[Server]:
    """The server the page tests share."""
    server = Server(tmp_path_factory.mktemp("e2e-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def own_server(tmp_path) -> Iterator[Server]:
    """A server for one test that kills or restarts it."""
    server = Server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


class Browsers:
    """Opens isolated browser contexts (separate storage = separate users) and tracks dialogs;
    closes them all at the end."""

    def __init__(self, browser) -> None:
        self.browser = browser
        self.contexts: list = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    def page(self, url: str, width: int = 1200, height: int = 800):
        context = self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)

        def on_dialog(dialog) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.goto(url)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsers(browser) -> Iterator[Browsers]:
    opened = Browsers(browser)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.errors, f"uncaught page errors: {opened.errors}"


@pytest.fixture
def shot():
    """shot(page, name): save a full-page screenshot as a test artifact."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    return take
