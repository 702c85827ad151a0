"""Fairness and bounded work per connection: the turn budget, the send timeout and the
message budget counted from frame headers.

Why here, in the WebSocket layer: on gevent a greenlet that never waits starves everyone,
and a read loop whose socket always has data never waits. Measured before these existed,
one anonymous /ws connection sending compressed 1.5 KB frames that inflate to 1 MiB of JSON
(71 KiB/s of traffic) took GET /healthz from 6 ms to 17.5 s, because every frame was
inflated, decoded and JSON-parsed — even those over the rate limit, only to echo their id.
So:

- `Pace` (one shared, immutable object per server): a connection yields to the others after
  `turn_bytes` bytes read or `turn_messages` messages handed to its route, whichever comes
  first, even while its socket has data; and a write that the peer does not take for
  `send_timeout` seconds ends the connection, whatever the route is doing.
- `MessageBudget` (per connection, installed by the layer above, e.g. the /ws route's rate
  limit): messages/s and bytes/s taken as token buckets when a message's first frame header
  arrives (bytes: each frame's payload length, or what a compressed frame inflates to), so a
  message over the budget is dropped before its payload is unmasked, decoded or parsed (and,
  without context takeover, before it is inflated). A connection that goes on sending over
  its budget — more than `max_dropped` messages dropped within `DROP_WINDOW` seconds — is
  closed with 1008.

Pure bookkeeping: no socket, no greenlet (the connection does the waiting).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

DROP_WINDOW = 10.0  # seconds over which max_dropped drops are tolerated (a sliding bucket)


class TokenBucket:
    """`rate` units per second with bursts up to `burst`; `take(n)` says whether n fit."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else 2 * rate
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        """Spend `n` tokens if available; a rate of 0 or less means unlimited."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class Pace:
    """How much one connection may do before the others get a turn, and how long a write may
    wait for the peer. One per server, shared by its connections (no per-connection cost).

    A yield costs ~20 us (a hub round trip, an epoll); the defaults keep that under ~1% of
    echo throughput (measured: a yield every 64 messages or 256 KiB cost 25-30%) while a
    turn stays short: 1024 small messages or 1 MiB read is a few ms of work.
    """

    __slots__ = ("turn_bytes", "turn_messages", "send_timeout", "message_cost",
                 "write_timeout")

    def __init__(self, turn_bytes: int = 1024 * 1024, turn_messages: int = 1024,
                 send_timeout: float = 30.0) -> None:
        self.turn_bytes = turn_bytes  # bytes read (or inflated) before yielding
        self.turn_messages = turn_messages  # messages handed to the route before yielding
        self.send_timeout = send_timeout  # seconds a write may wait for the peer; 0 = off
        # What one message counts for against turn_bytes (so one counter serves both).
        self.message_cost = max(1, turn_bytes // max(1, turn_messages))
        # send_timeout as sockio wants it (None: wait as long as it takes).
        self.write_timeout = send_timeout or None

    def _key(self) -> tuple[int, int, float]:
        return self.turn_bytes, self.turn_messages, self.send_timeout

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pace) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Pace(turn_bytes={self.turn_bytes}, turn_messages={self.turn_messages}, "
                f"send_timeout={self.send_timeout!r})")


DEFAULT_PACE = Pace()


def pace_of(settings: object) -> Pace:
    """The Pace of a server's settings (anything with WebSocketOptions' attributes; those it
    lacks keep their defaults)."""
    return pace(getattr(settings, "turn_bytes", DEFAULT_PACE.turn_bytes),
                getattr(settings, "turn_messages", DEFAULT_PACE.turn_messages),
                getattr(settings, "send_timeout", DEFAULT_PACE.send_timeout))


@lru_cache(maxsize=16)
def pace(turn_bytes: int, turn_messages: int, send_timeout: float) -> Pace:
    """The one shared Pace for these values (connections keep a reference, not a copy)."""
    return Pace(turn_bytes, turn_messages, send_timeout)


class MessageBudget:
    """What one connection may send: messages/s and bytes/s (bursts of 2x), counted from
    frame headers by the Receiver before any payload is processed.

    `on_drop(tail)` is told of each dropped message, with up to `TAIL` of its last payload
    bytes when they are known without processing the message (an uncompressed one), so the
    layer above can name the request it drops (its id) without parsing it.
    """

    __slots__ = ("messages", "bytes", "drops", "on_drop")

    TAIL = 512  # a small message's whole payload: its id can be read at a bounded cost

    def __init__(self, messages_per_s: float, bytes_per_s: float, max_dropped: int = 0,
                 on_drop: Callable[[bytes], None] | None = None) -> None:
        self.messages = TokenBucket(messages_per_s)
        self.bytes = TokenBucket(bytes_per_s)
        # A sliding allowance of drops: max_dropped within DROP_WINDOW seconds; 0 = no limit.
        self.drops = TokenBucket(max_dropped / DROP_WINDOW, max_dropped) if max_dropped else None
        self.on_drop = on_drop

    def admit(self, size: int) -> bool:
        """A message starts, with `size` payload bytes known so far: whether it fits."""
        return self.messages.take(1) and self.bytes.take(size)

    def more(self, size: int) -> bool:
        """`size` more payload bytes of an admitted message: whether they fit."""
        return self.bytes.take(size) if size else True

    def dropped(self) -> bool:
        """Count one dropped message; False once the connection has dropped too many."""
        return self.drops is None or self.drops.take(1)
