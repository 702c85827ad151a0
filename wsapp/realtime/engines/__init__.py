"""Where messages are kept and how they cross processes: the engines behind engines/base.py.

`Engines` holds the three engines of one hub and opens each on first use; `open_engine` is the
only place a URL picks an implementation:

    store     ""  (SQLite in data_dir)   sqlite:///rel.db  sqlite:////abs.db   memory   redis://
    broker    memory                                                                    redis://
    presence  follows the broker: local with the memory broker, Redis with a Redis one

redis://, rediss:// and unix:// URLs share one connection and bus per process (redis/).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any, Protocol

from gevent.lock import RLock

from wsapp.realtime.engines.base import Broker, Health, Presence, Store

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
KINDS = ("store", "broker", "presence")


class EngineSettings(Protocol):
    """What the engines read from the settings."""

    store: str
    broker: str
    data_dir: str
    history_size: int
    history_ttl: float
    key_ttl: float


def shared(url: str) -> bool:
    """Whether an engine URL reaches other processes (several workers need that)."""
    return url.startswith(REDIS_SCHEMES)


def store_url(settings: EngineSettings) -> str:
    """The store URL, defaulting to a SQLite file in data_dir."""
    return settings.store or f"sqlite:///{settings.data_dir}/wsapp.db"


def check_url(kind: str, url: str) -> None:
    """ValueError saying what is wrong with an engine URL (checked at start, not first use)."""
    if shared(url):
        if find_spec("redis") is None:
            raise ValueError(f"{kind}: {url}: the Redis engine needs the redis package "
                             "(pip install 'wsapp[redis]')")
    elif kind == "store" and url != "memory":
        from wsapp.realtime.engines.sqlite import sqlite_path

        try:
            sqlite_path(url)  # raises for anything else
        except ValueError as exc:
            raise ValueError(f"store: {exc}; or memory, or redis://host:port/db") from None
    elif url != "memory":
        raise ValueError(f"{kind}: unsupported URL {url!r}: use memory (one process) or "
                         "redis://host:port/db")


def open_engine(kind: str, url: str, settings: EngineSettings) -> Any:
    """The engine of `kind` ("store", "broker" or "presence") for `url`."""
    check_url(kind, url)
    if shared(url):  # imported only when configured: redis-py is an optional dependency
        if kind == "store":
            from wsapp.realtime.engines.redis.store import RedisStore

            return RedisStore(url, settings.history_size, settings.history_ttl,
                              settings.key_ttl)
        if kind == "broker":
            from wsapp.realtime.engines.redis.broker import RedisBroker

            return RedisBroker(url)
        from wsapp.realtime.engines.redis.presence import RedisPresence

        return RedisPresence(url)
    from wsapp.realtime.engines import memory

    if kind == "store" and url != "memory":
        from wsapp.realtime.engines.sqlite import SQLiteStore

        return SQLiteStore(url, settings.history_size, settings.history_ttl, settings.key_ttl)
    if kind == "store":
        return memory.MemoryStore(settings.history_size, settings.history_ttl, settings.key_ttl)
    return memory.MemoryBroker() if kind == "broker" else memory.LocalPresence()


class Engines:
    """The store, broker and presence of one hub, each opened on first use (an app that never
    publishes opens no file and no connection).

    Opening may wait (a SQLite file on its thread, a Redis connection): a lock makes the
    greenlets that first use an engine at the same moment (a feed and a first connection
    at start) share one, instead of each opening its own.
    """

    def __init__(self, settings: EngineSettings, *, store: Store | None = None,
                 broker: Broker | None = None, presence: Presence | None = None) -> None:
        self.settings = settings
        self._opening = RLock()
        # Engines handed in (tests, embedding) take the place of the configured ones.
        for name, engine in (("store", store), ("broker", broker), ("presence", presence)):
            if engine is not None:
                self.__dict__[name] = engine

    def _engine(self, kind: str, url: str) -> Any:
        engine = self.__dict__.get(kind)
        if engine is None:
            with self._opening:
                engine = self.__dict__.get(kind)
                if engine is None:
                    engine = self.__dict__[kind] = open_engine(kind, url, self.settings)
        return engine

    @property
    def store(self) -> Store:
        """Where messages are kept."""
        return self._engine("store", store_url(self.settings))

    @property
    def broker(self) -> Broker:
        """How messages reach every process."""
        return self._engine("broker", self.settings.broker)

    @property
    def presence(self) -> Presence:
        """Who is where, across processes when the broker crosses them."""
        return self._engine("presence", self.settings.broker)

    def opened(self) -> dict[str, Any]:
        """The engines opened so far, by kind."""
        return {kind: self.__dict__[kind] for kind in KINDS if kind in self.__dict__}

    def health(self) -> dict[str, Health]:
        """Each opened engine's state, by kind."""
        return {kind: engine.health() for kind, engine in self.opened().items()}

    def close(self) -> None:
        """Close every opened engine."""
        for engine in self.opened().values():
            engine.close()
