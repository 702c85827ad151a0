"""The Broker: carries every published message to every process's hub.

The in-memory broker serves one process: publish() hands the message straight to the local
hub. A cross-process broker (Redis) has the same two methods.
"""

from __future__ import annotations

from collections.abc import Callable

Deliver = Callable[[str, str], None]  # (channel, envelope text) -> None


class MemoryBroker:
    """One process: publishing is delivering locally."""

    name = "memory"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def start(self, deliver: Deliver) -> None:
        """Register the local hub's delivery function."""
        self._deliver = deliver

    def publish(self, channel: str, text: str) -> None:
        """Deliver `text` to the subscribers of `channel` (in this process)."""
        if self._deliver is not None:
            self._deliver(channel, text)

    def close(self) -> None:
        """Nothing to release."""


def open_broker(url: str) -> MemoryBroker:
    """A broker for a URL: 'memory' (one process) or redis://host:port/db (many)."""
    if url in ("", "memory"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from wsapp.realtime.engines.redis.backend import (
            RedisBroker,  # imported only when configured
        )

        return RedisBroker(url)  # type: ignore[return-value]
    raise ValueError(f"unsupported broker URL {url!r}")
