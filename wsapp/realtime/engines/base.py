"""The engine contracts: a Store keeps messages, a Broker carries them across processes, a
Presence knows who is where.

The hub talks to these three and to nothing else below it: never to SQLite or Redis by name,
and never asking "am I clustered?" — one process simply runs the memory broker and local
presence, a cluster the Redis ones, through the same calls. `wsapp.realtime.engines.open_engine`
is the only place a URL picks an implementation; `tests/realtime/engines` runs one contract
suite against every implementation.

Store jobs are tuples (cheap on the publish path), run in order by `Store.apply` as one
transaction:

    ("publish", channel, msg, sender, ts_ms, data_json[, key[, keep]])   -> offset | None
    ("push", user, msg, ts_ms, data_json, category, expires_ms, quotas[, key])
                                                         -> (status, reason, offset | None)
    ("delivered", [msg ids], ts_ms)                                    -> None

A publish result of None means "not stored" (an engine that is down may deliver it live only);
a store that cannot take a push, or a keyed publish, raises StoreUnavailable instead.

Idempotency keys. A publish or push may carry a `key` (a producer's idempotency key: a feed
message's, or an HTTP request's); None or absent means none. A key names one operation per
channel (publish) or per user (push), see `job_key`. The store remembers key -> (msg, result)
for `key_ttl` seconds, in the same transaction as the write (the Redis store in the same
script): a job whose key it already knows writes nothing — no history, no push record, no
quota count, no delivery — and its result is a `Replay` of the first run's msg id and result.
So a message redelivered after a crash (stored, then the process died before it acknowledged
the queue) is applied once however often it comes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypedDict

# Statuses a personal message can have; "pending" and "delivered" still wait for an ack.
PENDING, DELIVERED, ACKED, SUPPRESSED, EXPIRED = (
    "pending", "delivered", "acked", "suppressed", "expired")
STATUSES = (PENDING, DELIVERED, ACKED, SUPPRESSED, EXPIRED)

Job = tuple[Any, ...]
Quotas = Mapping[str, tuple[int, float]]  # name -> (limit, window seconds); see limits.py


class Replay(NamedTuple):
    """The result of a keyed job whose key the store already knew: nothing was written;
    `msg` and `result` are the first run's (result shaped as that job kind's result)."""

    msg: str
    result: Any

    @staticmethod
    def encode(msg: str, result: Any) -> str:
        """What a store keeps for a key: JSON [msg, result]."""
        return json.dumps([msg, result], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> Replay:
        """A Replay from what `encode` (or the Redis script, alike) kept."""
        msg, result = json.loads(text)
        return cls(msg, tuple(result) if isinstance(result, list) else result)


def job_keep(job: Job) -> tuple[int, int] | None:
    """The history a publish job's channel keeps, (messages, ms), when its channel's options
    say (`keep`, the job's 8th field); None: the store's history_size and history_ttl."""
    return job[7] if job[0] == "publish" and len(job) > 7 and job[7] else None


def job_key(job: Job) -> str | None:
    """The scoped idempotency key of a publish or push job; None when it carries none.

    Scoped by kind and target: the same key on another channel or user is another operation.
    """
    kind = job[0]
    if kind == "publish" and len(job) > 6 and job[6]:
        return f"publish\n{job[1]}\n{job[6]}"
    if kind == "push" and len(job) > 8 and job[8]:
        return f"push\n{job[1]}\n{job[8]}"
    return None


class History(TypedDict):
    """Messages after an offset, and what the channel still keeps."""

    messages: list[dict[str, Any]]
    first_offset: int  # the oldest offset still kept (last_offset + 1 when none is)
    last_offset: int  # the newest offset ever assigned (0 for a channel never used)


class Health(TypedDict, total=False):
    """What /healthz shows of an engine."""

    engine: str  # "memory", "sqlite", "redis"
    state: str  # "up" or "down"
    detail: str  # why it is down, or where it is


class Store(Protocol):
    """Channel history with per-channel offsets, personal messages, acks and quotas."""

    def apply(self, jobs: Sequence[Job]) -> list[Any]:
        """Run write jobs (see the module docstring) as one transaction; one result each."""

    def ack(self, user: str, msg: str, ts: int) -> str | None:
        """Mark `msg` acked if it is `user`'s: its status after, None if it is not theirs."""

    def history(self, channel: str, since: int, limit: int) -> History:
        """Messages with offset > since, oldest first, at most `limit`."""

    def last_offset(self, channel: str) -> int:
        """The channel's newest offset (0 when it has none)."""

    def pending(self, user: str, ts: int) -> list[dict[str, Any]]:
        """The user's unacked, unexpired personal messages, oldest first."""

    def records(self, user: str, status: str | None, limit: int,
                ts: int) -> list[dict[str, Any]]:
        """The user's push records, newest first, optionally of one status."""

    def revoke(self, user: str, before: int) -> None:
        """Refuse `user`'s tokens issued before `before` (epoch ms) from now on."""

    def revoked(self, user: str) -> int:
        """Epoch ms before which `user`'s tokens are refused (0: none are)."""

    def health(self) -> Health:
        """Whether the store answers."""

    def close(self) -> None:
        """Release files and connections."""


class BrokerHandler(Protocol):
    """What a broker hands messages to: the hub of this process."""

    def deliver(self, channel: str, text: str) -> None:
        """A message for this process's subscribers of `channel`."""

    def control(self, payload: str) -> None:
        """A server-side operation (subscribe a user, disconnect...) meant for every process."""

    def resumed(self) -> None:
        """The broker lost messages for a while (an outage) and carries them again: bring
        this process's subscribers up to date."""


class Broker(Protocol):
    """Fan-out to every process: each process's handler gets each message once, in order."""

    def start(self, handler: BrokerHandler) -> None:
        """Begin delivering to `handler` (this process's hub)."""

    def publish(self, channel: str, text: str) -> None:
        """Deliver a message envelope to every process's subscribers of `channel`."""

    def control(self, payload: str) -> None:
        """Hand `payload` to every process's handler.control (this one's included)."""

    def health(self) -> Health:
        """Whether messages cross processes right now."""

    def close(self) -> None:
        """Stop delivering; release connections."""


class LocalView(Protocol):
    """This process's own connections, as presence engines read them (the hub)."""

    def local_members(self, channel: str) -> Mapping[str, int]:
        """user -> that user's connections in `channel` on this process."""

    def local_connections(self, channel: str) -> int:
        """Connections (anonymous ones too) in `channel` on this process."""

    def local_channels(self) -> Iterable[str]:
        """Every channel with a connection on this process."""

    def local_online(self, user: str) -> bool:
        """Whether `user` has a connection on this process."""

    def local_users(self) -> int:
        """Distinct users connected to this process."""

    def connection_count(self) -> int:
        """Connections on this process."""


class PresenceHandler(Protocol):
    """Where join and leave events go: the hub fans them out to a channel's subscribers."""

    def presence_event(self, op: str, channel: str, user: str, skip: str) -> None:
        """`op` is "join" or "leave"; `skip` is the id of a connection not to tell ("" none)."""


class Presence(Protocol):
    """Who is in which channel and who is online, everywhere; and shared figures."""

    def start(self, local: LocalView, handler: PresenceHandler) -> None:
        """Begin: read this process's share from `local`, send events to `handler`."""

    def changed(self, channel: str, user: str | None, client: str, delta: int) -> None:
        """A connection (of `user`, None: anonymous) entered (+1) or left (-1) `channel`;
        `local` already shows it. A user's first connection anywhere fires join, the last
        one leave (to everyone subscribed but `client`)."""

    def members(self, channel: str) -> dict[str, Any]:
        """{"members": sorted user ids, "count": n, "connections": n} across processes."""

    def is_online(self, user: str) -> bool:
        """Whether `user` has a connection on any process."""

    def online_users(self) -> int:
        """Distinct users connected anywhere."""

    def channel_count(self) -> int:
        """Channels with at least one connection anywhere."""

    def gather(self, name: str, share: dict[str, Any], lease: float) -> list[dict[str, Any]] | None:
        """Put this process's `share` of figure set `name`; if this process is the one that
        reports `name` (elected for `lease` seconds), every live process's share, else None.

        A single process always reports, with its own share alone.
        """

    def health(self) -> Health:
        """Whether the shared view is current."""

    def close(self) -> None:
        """Leave: take this process's share out."""
