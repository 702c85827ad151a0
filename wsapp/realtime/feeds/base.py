"""The Feed contract: a queue that pushes and publishes are taken from (docs/feeds.md).

A Feed only talks to its source: it connects, hands out batches of `Delivery`s, settles them
(acknowledges the applied ones, moves the poison ones to its dead letters), and says how far
behind it is. Everything else — parsing and validating each message, applying it through the
hub's single writer, retrying while the store is unavailable, reconnecting with backoff,
health and metrics — is the runner's (runner.py), the same for every source. So each source
file holds only what is particular to its client library, and `open_feed` (feeds/__init__.py)
is the one place a URL picks a source.

The runner calls a Feed from one greenlet, one call at a time, each under a timeout: a Feed
need not be greenlet-safe, and a call that hangs on a dead source is cut off and the Feed
closed and connected afresh. Any exception from a call means "the source is not usable right
now" (FeedUnavailable when the Feed knows it is the source's fault).

Settling is the acknowledgement: the runner settles a batch only after the store committed
it, and a Feed must make settling atomic where its source allows (a Redis MULTI, one
PostgreSQL transaction), so a crash leaves each message either acknowledged or redelivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

BATCH = 200  # messages per round by default: bounded work in flight
TIMEOUT = 10.0  # seconds one call on a source may take by default before it counts as down
COMMON_OPTIONS = ("batch", "timeout")


def common_options(where: str, options: dict[str, str]) -> tuple[int, float]:
    """(batch, timeout) from a feed URL's options; ValueError naming a bad one."""
    try:
        batch = int(options.get("batch") or BATCH)
        timeout = float(options.get("timeout") or TIMEOUT)
    except ValueError:
        raise ValueError(f"feed {where}: batch must be a whole number and timeout seconds") \
            from None
    if not 1 <= batch <= 10_000 or not 0 < timeout <= 3600:
        raise ValueError(f"feed {where}: batch must be 1..10000 and timeout 0..3600 seconds")
    return batch, timeout


class FeedUnavailable(Exception):
    """The source cannot be reached or refused an operation: reconnect later."""


def describe(exc: BaseException) -> str:
    """An exception in one short line, for a log line or /healthz."""
    text = str(exc).strip()
    text = text.splitlines()[0][:300] if text else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(slots=True)
class Delivery:
    """One message taken from a source, not yet settled."""

    body: bytes | str  # the message as the source holds it (JSON, see feeds/message.py)
    tag: Any  # what settle() needs to find it again (stream entry, delivery tag, row id)
    ident: str | None = None  # the source's lasting id for it (the key when it has none)
    redelivered: bool = False  # the source handed it out before (a consumer died, a retry)
    problem: str | None = None  # why it is poison before it is even parsed (malformed entry)


class Feed(Protocol):
    """A source of feed messages (docs/feeds.md), driven by runner.FeedRunner."""

    kind: str  # "redis", "amqp" or "postgresql"
    name: str  # a short label for logs and metrics: "redis:orders"
    where: str  # the URL without its password
    dead_letters: str  # where poison messages go: a stream, a queue or a table
    batch: int  # messages per round (`batch=` option)
    timeout: float  # seconds one call may take before the source counts as down (`timeout=`)

    def connect(self) -> None:
        """Open connections; create what is missing (consumer group, queues, tables)."""

    def fetch(self, limit: int, wait: float) -> list[Delivery]:
        """Up to `limit` messages, oldest first, waiting at most about `wait` seconds for the
        first one; [] when there is none."""

    def settle(self, done: Sequence[Delivery], dead: Sequence[tuple[Delivery, str]]) -> None:
        """Acknowledge `done` (applied) and move each of `dead` to the dead letters with its
        reason, then acknowledge it too; atomically where the source allows. Every message of
        the last fetch is in one of the two."""

    def lag(self) -> int | None:
        """How many messages wait at the source (None: it cannot tell)."""

    def close(self) -> None:
        """Drop the connections; unsettled messages go back to the source for redelivery."""
