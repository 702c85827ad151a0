"""Fixtures for the cluster tests: a real redis-server on a free loopback port, and several
wsapp processes (serve.py, `serve.py --workers N`, or gunicorn) sharing it.

No mocks: every test talks WebSocket and HTTP to real server processes, which talk to a real
Redis. Each test gets its own key prefix (`?prefix=` in the Redis URL), so tests sharing the
session's Redis never see each other's channels or presence.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import serverproc
from realtime.helpers import RealtimeServer
from redisproc import RedisServer

API_KEY = "cluster-key"
SECRET = "cluster-secret-that-is-32-bytes-long!"  # every process verifies every token
_prefixes = itertools.count(1)


class ClusterServer(RealtimeServer):
    """A RealtimeServer whose command line may be anything (serve.py --workers, gunicorn)."""

    def __init__(self, workdir: Path, flags: list[str], api_key: str = API_KEY,
                 argv: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__(workdir, flags, api_key)
        self.custom_argv = argv  # "{port}" is replaced by the chosen port
        self.extra_env = dict(env or {})

    def argv(self) -> list[str]:
        if self.custom_argv is None:
            return super().argv()
        return [a.replace("{port}", str(self.port)) for a in self.custom_argv]

    def kill9(self) -> None:
        """SIGKILL the process: no goodbye to Redis, no close frames."""
        for client in self.clients:
            client.abort()
        self.clients.clear()
        serverproc.kill(self.proc)


class Cluster:
    """Starts wsapp processes that share one Redis and stops them all at teardown."""

    def __init__(self, base: Path, redis: RedisServer) -> None:
        self.base = base
        self.redis = redis
        self.prefix = f"t{next(_prefixes)}{os.getpid()}x{os.urandom(2).hex()}"
        self.servers: list[ClusterServer] = []

    @property
    def url(self) -> str:
        return self.redis.url(self.prefix)

    def flags(self) -> list[str]:
        # Pings every 60 s: a test client reads only when it expects something, and on a
        # loaded machine a test can take longer than the default 20 s between reads.
        return ["--broker", self.url, "--store", self.url, "--secret", SECRET,
                "--log-level", "INFO", "--ping-interval", "60"]

    def start(self, n: int = 2, *extra: str) -> list[ClusterServer]:
        """`n` serve.py processes, each on its own port, started side by side."""
        servers = [self.add(*extra, wait=False) for _ in range(n)]
        for server in servers:
            server.wait_ready()
        return servers

    def add(self, *extra: str, wait: bool = True, argv: list[str] | None = None,
            env: dict[str, str] | None = None, plain: bool = False) -> ClusterServer:
        workdir = self.base / f"server-{len(self.servers)}"
        workdir.mkdir()
        flags = list(extra) if plain else [*self.flags(), *extra]
        server = ClusterServer(workdir, flags, argv=argv, env=env)
        self.servers.append(server)
        server.spawn()
        return server.wait_ready() if wait else server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def cluster(tmp_path, redis_server):
    """`cluster.start(2)` -> two serve.py processes on the session's Redis."""
    c = Cluster(tmp_path, redis_server)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, redis_server):
    """Two serve.py processes shared by one module (tests use their own users/channels)."""
    c = Cluster(tmp_path_factory.mktemp("pair"), redis_server)
    try:
        c.start(2, "--quota", "promo=2/day", "--history-size", "20")
        yield c.servers
    finally:
        c.stop_all()
