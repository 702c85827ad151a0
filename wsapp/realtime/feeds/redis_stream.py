"""A Redis Stream read through a consumer group: `redis://HOST:PORT/DB?stream=S&group=G`.

Each entry holds one field, `message`, the JSON feed message (feeds/message.py):

    XADD orders * message '{"op":"push","user":"ann","data":{"text":"shipped"},"key":"o-7"}'

Every process is a consumer of the group (named host-pid-random), so each entry goes to one
of them (XREADGROUP ... >); an entry is XACKed only once the store committed it. An entry a
dead consumer left unacknowledged is taken over by a live one once it has been idle
`claim_after` seconds (XAUTOCLAIM): redelivered, and its key makes it a no-op if it had been
stored. After a reconnect a consumer first re-reads its own unacknowledged entries (id 0).

Options: `group` (required), `consumer` (default host-pid-random), `claim_after` (seconds,
default 60: longer than a batch can take), `dead` (the dead-letter stream, default
`<stream>:dead`), plus the URL's own redis-py options. wsapp creates the group at the start
of the stream (MKSTREAM) when it is missing: create it yourself with `$` to skip what the
stream already holds. Entries are not deleted once acknowledged: trim the stream when you
XADD (MAXLEN or MINID), as the consumer group may not be its only reader.

A dead letter is an entry of the dead-letter stream with the original's fields plus
`wsapp:reason` and `wsapp:id` (the original entry id); it is capped near DEAD_MAXLEN entries.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from wsapp.realtime.feeds.base import (
    COMMON_OPTIONS,
    Delivery,
    FeedUnavailable,
    common_options,
    describe,
)
from wsapp.realtime.urls import redact, take_options

OPTIONS = ("stream", "group", "consumer", "claim_after", "dead", *COMMON_OPTIONS)
FIELD = b"message"
DEAD_MAXLEN = 100_000
LAG_SCAN = 10_000  # entries counted at most when Redis cannot tell the group's lag itself
# Any refusal counts as "not usable now" (the stream or group deleted under us: NOGROUP,
# UNBLOCKED...): reconnecting recreates what is missing.
UNREACHABLE = (redis.RedisError, OSError)


class RedisStreamFeed:
    """The Feed of base.py on a Redis Stream consumer group."""

    kind = "redis"

    def __init__(self, url: str) -> None:
        self.url, options = self.parse(url)
        self.batch, self.timeout = common_options(redact(url), options)
        self.stream, self.group = options["stream"], options["group"]
        self.consumer = options.get("consumer") or \
            f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(24):06x}"
        self.claim_after_ms = int(float(options.get("claim_after") or 60) * 1000)
        self.dead_letters = options.get("dead") or f"{self.stream}:dead"
        self.name = f"redis:{self.stream}"
        self.where = redact(url)
        self._client: redis.Redis | None = None
        self._own_first = True  # after a (re)connect: our own unacknowledged entries first
        self._next_claim = 0.0

    @staticmethod
    def parse(url: str) -> tuple[str, dict[str, str]]:
        """(the redis-py URL, our options); ValueError when stream or group is missing."""
        clean, options = take_options(url, OPTIONS)
        for name in ("stream", "group"):
            if not options.get(name):
                raise ValueError(f"feed {redact(url)}: needs ?{name}=NAME")
        try:
            if float(options.get("claim_after") or 60) <= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"feed {redact(url)}: claim_after must be seconds > 0") from None
        common_options(redact(url), options)
        return clean, options

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise FeedUnavailable("not connected")
        return self._client

    def connect(self) -> None:
        """Connect, and create the group (at the stream's start) when it is missing."""
        client = redis.Redis.from_url(
            self.url, socket_timeout=self.timeout + 5, socket_connect_timeout=self.timeout,
            socket_keepalive=True, retry=Retry(NoBackoff(), 0),
            client_name=f"wsapp-feed-{os.getpid()}")
        self._client = client
        try:
            client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise FeedUnavailable(describe(exc)) from None
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None
        self._own_first = True
        self._next_claim = 0.0

    def fetch(self, limit: int, wait: float) -> list[Delivery]:
        """Our own unacknowledged entries after a reconnect, then entries claimed from dead
        consumers, then new ones (waiting up to `wait` for the first).

        Own entries are read before claiming: a claimed entry joins our own pending list, and
        reading that list after the claim would hand the same entry over twice.
        """
        try:
            out: list[Delivery] = []
            if self._own_first:
                out = self._read("0", limit, None)
                self._own_first = bool(out)
            if len(out) < limit:
                out += self._claim(limit - len(out))
            if len(out) < limit:
                out += self._read(">", limit - len(out), None if out else wait)
            return out
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None

    def _claim(self, limit: int) -> list[Delivery]:
        """Entries idle past claim_after in dead consumers' hands (checked now and then)."""
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + min(5.0, self.claim_after_ms / 2000)
        # (redis-py's type hints for stream replies are not their shapes)
        reply: Any = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                            self.claim_after_ms, "0-0", count=limit)
        claimed, deleted = reply[1], reply[2] if len(reply) > 2 else []
        if deleted:  # trimmed away while pending: nothing left to apply
            self.client.xack(self.stream, self.group, *deleted)
        return [_delivery(entry_id, fields, True) for entry_id, fields in claimed if fields]

    def _read(self, start: str, count: int, wait: float | None) -> list[Delivery]:
        block = None if wait is None else max(1, int(wait * 1000))
        reply: Any = self.client.xreadgroup(self.group, self.consumer, {self.stream: start},
                                            count=count, block=block)
        entries = reply[0][1] if reply else []
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:  # our own pending entries that were trimmed meanwhile
            self.client.xack(self.stream, self.group, *gone)
        return [_delivery(entry_id, fields, start != ">") for entry_id, fields in entries
                if fields]

    def settle(self, done: Sequence[Delivery], dead: Sequence[tuple[Delivery, str]]) -> None:
        """Dead letters added and every entry acknowledged, in one MULTI/EXEC."""
        try:
            pipe = self.client.pipeline(transaction=True)
            for delivery, reason in dead:
                entry_id, fields = delivery.tag
                pipe.xadd(self.dead_letters,
                          {**fields, b"wsapp:reason": reason, b"wsapp:id": entry_id},
                          maxlen=DEAD_MAXLEN, approximate=True)
            ids = [d.tag[0] for d in done] + [d.tag[0] for d, _ in dead]
            if ids:
                pipe.xack(self.stream, self.group, *ids)
            pipe.execute()
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None

    def lag(self) -> int | None:
        """Entries not yet delivered to the group plus those delivered but not acknowledged."""
        try:
            for info in self.client.xinfo_groups(self.stream):
                if _text(info.get("name")) != self.group:
                    continue
                pending = int(info.get("pending") or 0)
                lag = info.get("lag")
                if lag is None:  # entries were deleted: count what follows the group's place
                    last = _text(info.get("last-delivered-id")) or "0-0"
                    scanned: Any = self.client.xrange(self.stream, f"({last}", "+",
                                                      count=LAG_SCAN)
                    lag = len(scanned)
                return pending + int(lag)
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None
        return None

    def close(self) -> None:
        """Drop the connections (our unacknowledged entries wait to be claimed)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
                client.connection_pool.disconnect()
            except Exception:  # closing a dead connection may fail in many ways; none matter
                pass


if TYPE_CHECKING:  # mypy proves each source implements the contract (feeds/base.py)
    from wsapp.realtime.feeds.base import Feed

    _REDISSTREAMFEED: type[Feed] = RedisStreamFeed


def _delivery(entry_id: Any, fields: dict, redelivered: bool) -> Delivery:
    entry = _text(entry_id)
    body = fields.get(FIELD)
    problem = None
    if body is None or len(fields) != 1:
        names = ", ".join(sorted(_text(k) for k in fields))
        problem = f"a stream entry must have one field 'message' (it has: {names})"
    return Delivery(body or b"", (entry, fields), ident=entry, redelivered=redelivered,
                    problem=problem)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
