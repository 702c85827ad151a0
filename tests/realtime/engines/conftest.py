"""Engines under test: every implementation of each contract, the Redis ones on a real
redis-server (the session's, each test under its own key prefix).

`processes(n)` builds n engines of a kind that behave like n separate processes: for Redis,
URLs that differ only by the host's spelling (127.0.0.1 / localhost) get a connection and a
bus each, exactly as two processes would; memory engines are one process by nature.

Brokers and presence read their bus in greenlets, so their suites need a gevent-patched
process, as a server is: pytest itself must not be patched (other tests use real threads), so
test_under_gevent.py runs those modules in a child pytest that patches before anything else.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from gevent import monkey

from wsapp.realtime.engines import open_engine

UNDER_GEVENT = monkey.is_module_patched("socket")
NEED_GEVENT = ["test_broker_contract.py", "test_presence_contract.py"]
collect_ignore = [] if UNDER_GEVENT else NEED_GEVENT

_ids = itertools.count(1)
HOSTS = ("127.0.0.1", "localhost")


@dataclass
class EngineSettings:
    """Just what the engines read."""

    store: str = ""
    broker: str = "memory"
    data_dir: str = ""
    history_size: int = 5
    history_ttl: float = 3600.0
    key_ttl: float = 3600.0


def wait_for(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (the bus is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s (last: {got!r})")
        time.sleep(0.02)


class Engines:
    """Opens engines of one flavour and closes them after the test."""

    def __init__(self, flavour: str, tmp_path, redis_server) -> None:
        self.flavour = flavour
        self.tmp_path = tmp_path
        self.redis_server = redis_server
        self.prefix = f"t{os.getpid()}x{next(_ids)}"
        self.opened: list[Any] = []

    def url(self, kind: str, process: int = 0) -> str:
        if self.flavour == "redis":
            port = self.redis_server.port
            return f"redis://{HOSTS[process]}:{port}/0?prefix={self.prefix}"
        if self.flavour == "sqlite" and kind == "store":
            return f"sqlite:///{self.tmp_path}/store.db"
        return "memory"

    def open(self, kind: str, process: int = 0, **overrides: Any) -> Any:
        settings = EngineSettings(data_dir=str(self.tmp_path), **overrides)
        engine = open_engine(kind, self.url(kind, process), settings)
        self.opened.append(engine)
        return engine

    def processes(self, kind: str, n: int) -> list[Any]:
        """n engines of `kind`, as n processes would each have one (1 for memory)."""
        return [self.open(kind, i) for i in range(n if self.flavour == "redis" else 1)]

    def close(self) -> None:
        for engine in reversed(self.opened):
            engine.close()


def _engines(request, tmp_path) -> Engines:
    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" \
        else None
    engines = Engines(request.param, tmp_path, redis_server)
    request.addfinalizer(engines.close)
    return engines


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_engines(request, tmp_path) -> Engines:
    """Opens stores of each implementation in turn."""
    return _engines(request, tmp_path)


@pytest.fixture
def store(store_engines):
    """A store of each implementation (history_size 5)."""
    return store_engines.open("store")


@pytest.fixture(params=["memory", "redis"])
def engines(request, tmp_path) -> Engines:
    """Brokers and presences of each implementation in turn."""
    return _engines(request, tmp_path)
