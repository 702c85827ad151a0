"""Fixtures for the `/ws` app protocol tests: real serve.py subprocesses (see helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import API_KEY, RealtimeServer


class Launcher:
    """Starts RealtimeServers in numbered work dirs and stops them all at teardown."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: list[RealtimeServer] = []

    def __call__(self, *flags: str, api_key: str = "", wait: bool = True) -> RealtimeServer:
        workdir = self.base / f"server-{len(self.servers)}"
        workdir.mkdir()
        server = RealtimeServer(workdir, list(flags), api_key)
        self.servers.append(server)
        server.spawn()
        return server.wait_ready() if wait else server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
        for server in self.servers:
            assert "Traceback" not in server.log(), server.log()[-4000:]


@pytest.fixture(scope="session")
def launch_session(tmp_path_factory):
    """Start servers shared by the whole session."""
    launcher = Launcher(tmp_path_factory.mktemp("realtime-session"))
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="module")
def launch_module(tmp_path_factory):
    """Start servers shared by one module: `launch_module("--max-backlog", "65536")`."""
    launcher = Launcher(tmp_path_factory.mktemp("realtime"))
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def launch(tmp_path):
    """Start servers for one test."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="session")
def servers(launch_session) -> dict[str, RealtimeServer]:
    """The shared servers, started side by side (each takes seconds to import on a busy box).

    rt:   small limits (protocol and metrics tests)
    fan:  no rate limits, a 64 KiB backlog per reader (fan-out, presence, slow consumers)
    lim:  20 messages/s and 20,000 bytes/s per connection (bursts of 2x)
    edge: an API key, 3 WebSockets per IP, tokens that live 2 s
    """
    started = {
        "rt": launch_session("--max-subscriptions", "5", "--max-publish-size", "1024",
                             "--rate-messages", "200", "--rate-bytes", "1000000", wait=False),
        "fan": launch_session("--rate-messages", "0", "--rate-bytes", "0",
                              "--max-subscriptions", "20", "--max-backlog", "65536",
                              wait=False),
        "lim": launch_session("--rate-messages", "20", "--rate-bytes", "20000",
                              "--max-publish-size", "65536", wait=False),
        "edge": launch_session("--max-connections-per-ip", "3", "--token-ttl", "2",
                               api_key=API_KEY, wait=False),
    }
    for server in started.values():
        server.wait_ready()
    return started


@pytest.fixture(scope="session")
def rt(servers) -> RealtimeServer:
    return servers["rt"]


@pytest.fixture(scope="session")
def fan(servers) -> RealtimeServer:
    return servers["fan"]


@pytest.fixture(scope="session")
def lim(servers) -> RealtimeServer:
    return servers["lim"]


@pytest.fixture(scope="session")
def edge(servers) -> RealtimeServer:
    return servers["edge"]


def _closing(server: RealtimeServer):
    before = len(server.clients)
    yield
    for client in server.clients[before:]:
        client.close()
    del server.clients[before:]


@pytest.fixture
def close_clients(rt):
    """Closes the clients a test opened on `rt` when it ends, keeping the server clean."""
    yield from _closing(rt)


@pytest.fixture
def close_fan_clients(fan):
    """Closes the clients a test opened on `fan` when it ends."""
    yield from _closing(fan)


from realtime.hubpeers import make, settings  # noqa: E402,F401 -- fixtures
