"""The in-process engines: one process, nothing shared, nothing kept across restarts.

`MemoryBroker` delivers a publish straight to this process's hub; `LocalPresence` reads
presence off the hub's own maps and fires join/leave itself; `MemoryStore` keeps history and
personal messages in dicts (`--store memory`: for tests and throwaway servers — the default
store is SQLite, which survives a restart). They implement the contracts of engines/base.py
exactly as the SQLite and Redis engines do (tests/realtime/engines runs one suite on all).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsapp.realtime.engines.base import (
    ACKED,
    DELIVERED,
    EXPIRED,
    PENDING,
    SUPPRESSED,
    BrokerHandler,
    Health,
    History,
    Job,
    LocalView,
    PresenceHandler,
    Quotas,
    Replay,
    job_keep,
    job_key,
)
from wsapp.realtime.limits import applicable_quotas

RECORD_RETENTION_MS = 8 * 86400 * 1000  # push records outlive their expiry and quota windows


class MemoryBroker:
    """One process: publishing is delivering locally."""

    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None

    def start(self, handler: BrokerHandler) -> None:
        """Deliver to `handler` from now on."""
        self._handler = handler

    def publish(self, channel: str, text: str) -> None:
        """Deliver `text` to the subscribers of `channel` (in this process)."""
        if self._handler is not None:
            self._handler.deliver(channel, text)

    def control(self, payload: str) -> None:
        """This process is every process."""
        if self._handler is not None:
            self._handler.control(payload)

    def health(self) -> Health:
        """Always up."""
        return {"engine": "memory", "state": "up"}

    def close(self) -> None:
        """Nothing to release."""
        self._handler = None


class LocalPresence:
    """Presence of one process: the hub's own maps are the whole truth."""

    def __init__(self) -> None:
        self._local: LocalView | None = None
        self._handler: PresenceHandler | None = None

    def start(self, local: LocalView, handler: PresenceHandler) -> None:
        """Read `local`, send join/leave to `handler`."""
        self._local, self._handler = local, handler

    def _view(self) -> LocalView:
        if self._local is None:
            raise RuntimeError("presence used before start()")
        return self._local

    def changed(self, channel: str, user: str | None, client: str, delta: int) -> None:
        """Fire join on a user's first connection in `channel`, leave on the last."""
        if user is None or self._handler is None:
            return
        now = self._view().local_members(channel).get(user, 0)
        if delta > 0 and now == delta:
            self._handler.presence_event("join", channel, user, client)
        elif delta < 0 and now == 0:
            self._handler.presence_event("leave", channel, user, "")

    def members(self, channel: str) -> dict[str, Any]:
        """Members of `channel` on this process, each once."""
        view = self._view()
        members = sorted(view.local_members(channel))
        return {"members": members, "count": len(members),
                "connections": view.local_connections(channel)}

    def is_online(self, user: str) -> bool:
        """Whether `user` is connected here."""
        return self._view().local_online(user)

    def online_users(self) -> int:
        """Distinct users connected here."""
        return self._view().local_users()

    def channel_count(self) -> int:
        """Channels with a connection here."""
        return sum(1 for _ in self._view().local_channels())

    def gather(self, name: str, share: dict[str, Any], lease: float) -> list[dict[str, Any]]:
        """One process reports its own figures."""
        return [share]

    def health(self) -> Health:
        """Always up."""
        return {"engine": "memory", "state": "up"}

    def close(self) -> None:
        """Nothing to take out."""


@dataclass
class _Record:
    """One personal message, as push records show it."""

    msg: str
    user: str
    offset: int | None
    category: str | None
    data: str
    status: str
    reason: str | None
    created: int
    expires: int | None
    delivered: int | None = None
    acked: int | None = None
    attempts: int = 0

    def public(self) -> dict[str, Any]:
        return {"msg": self.msg, "status": self.status, "reason": self.reason,
                "category": self.category, "offset": self.offset, "created": self.created,
                "delivered": self.delivered, "acked": self.acked, "expires": self.expires,
                "attempts": self.attempts, "data": json.loads(self.data)}


class MemoryStore:
    """History and personal messages in this process's memory, bounded like the others."""

    def __init__(self, history_size: int = 1000, history_ttl: float = 86400.0,
                 key_ttl: float = 86400.0) -> None:
        self.history_size = history_size
        self.history_ttl_ms = int(history_ttl * 1000)
        self.key_ttl_ms = int(key_ttl * 1000)
        # idempotency keys: scoped key -> (expires ms, msg, result); `_key_order` lists them
        # oldest first (one ttl for all: expiry order is insertion order) to drop the expired
        self._keys: dict[str, tuple[int, str, Any]] = {}
        self._key_order: deque[tuple[int, str]] = deque()
        self._last: dict[str, int] = {}
        # channel -> (offset, msg, sender, ts, data_json), oldest first
        self._history: dict[str, deque[tuple[int, str, str | None, int, str]]] = {}
        self._records: dict[str, _Record] = {}
        self._by_user: dict[str, list[_Record]] = {}  # in creation order
        self._revoked: dict[str, int] = {}

    # -- writes ------------------------------------------------------------------------

    def apply(self, jobs: Sequence[Job]) -> list[Any]:
        """Run the jobs in order; an unknown job refuses the batch before any is run."""
        for job in jobs:
            if job[0] not in ("publish", "push", "delivered"):
                raise ValueError(f"unknown store job {job[0]!r}")
        return self._apply(jobs)

    def _apply(self, jobs: Sequence[Job]) -> list[Any]:
        results: list[Any] = []
        touched: dict[str, tuple[int, int] | None] = {}  # channel -> its own history, if any
        now = _now_ms()
        self._forget_keys(now)
        for job in jobs:
            kind = job[0]
            scoped = job_key(job)
            seen = self._keys.get(scoped) if scoped is not None else None
            if seen is not None:
                results.append(Replay(seen[1], seen[2]))
                continue
            if kind == "publish":
                channel, msg, sender, ts, data = job[1:6]
                results.append(self._append(channel, msg, sender, ts, data))
                touched[channel] = job_keep(job)
            elif kind == "push":
                results.append(self._push(*job[1:8]))
                touched.setdefault(f"user:{job[1]}", None)
            else:
                _, msgs, ts = job
                for msg in msgs:
                    rec = self._records.get(msg)
                    if rec is not None and rec.status in (PENDING, DELIVERED):
                        rec.status = DELIVERED
                        rec.delivered = rec.delivered or ts
                        rec.attempts += 1
                results.append(None)
            if scoped is not None:
                self._keys[scoped] = (now + self.key_ttl_ms, job[2], results[-1])
                self._key_order.append((now + self.key_ttl_ms, scoped))
        for channel, keep in touched.items():
            self._trim(channel, now, *(keep or (self.history_size, self.history_ttl_ms)))
        return results

    def _forget_keys(self, now: int) -> None:
        """Drop the idempotency keys past key_ttl (memory stays bounded)."""
        order = self._key_order
        while order and order[0][0] < now:
            _, scoped = order.popleft()
            seen = self._keys.get(scoped)
            if seen is not None and seen[0] < now:
                del self._keys[scoped]

    def _append(self, channel: str, msg: str, sender: str | None, ts: int, data: str) -> int:
        offset = self._last.get(channel, 0) + 1
        self._last[channel] = offset
        self._history.setdefault(channel, deque()).append((offset, msg, sender, ts, data))
        return offset

    def _trim(self, channel: str, now: int, size: int, ttl_ms: int) -> None:
        """Keep at most `size` messages, none older than `ttl_ms`."""
        kept = self._history.get(channel)
        if kept is None:
            return
        oldest_offset = self._last[channel] - size
        while kept and (kept[0][0] <= oldest_offset or kept[0][3] < now - ttl_ms):
            kept.popleft()

    def _push(self, user: str, msg: str, ts: int, data: str, category: str | None,
              expires: int | None, quotas: Quotas) -> tuple[str, str | None, int | None]:
        mine = self._prune(user, ts)
        for name, limit, window, reason in applicable_quotas(quotas, user, category):
            since = ts - int(window * 1000)
            count = sum(1 for r in mine if r.created >= since and r.status != SUPPRESSED
                        and (name == "total" or r.category == category))
            if count >= limit:
                self._keep(_Record(msg, user, None, category, data, SUPPRESSED, reason, ts,
                                   expires))
                return SUPPRESSED, reason, None
        offset = self._append(f"user:{user}", msg, None, ts, data)
        self._keep(_Record(msg, user, offset, category, data, PENDING, None, ts, expires))
        return PENDING, None, offset

    def _keep(self, rec: _Record) -> None:
        self._records[rec.msg] = rec
        self._by_user.setdefault(rec.user, []).append(rec)

    def _prune(self, user: str, now: int) -> list[_Record]:
        """The user's records, without those past the retention (memory stays bounded)."""
        mine = self._by_user.get(user, [])
        cut = 0
        while cut < len(mine) and mine[cut].created < now - RECORD_RETENTION_MS and \
                mine[cut].status not in (PENDING, DELIVERED):
            del self._records[mine[cut].msg]
            cut += 1
        if cut:
            del mine[:cut]
        return mine

    def ack(self, user: str, msg: str, ts: int) -> str | None:
        """Mark `msg` acked if it is `user`'s; its status after, None if not found."""
        rec = self._records.get(msg)
        if rec is None or rec.user != user:
            return None
        if rec.status in (PENDING, DELIVERED):
            if rec.expires is not None and rec.expires < ts:
                rec.status = EXPIRED
                return EXPIRED
            # An ack proves delivery: fill the time in if the "delivered" update has not
            # landed yet.
            rec.status, rec.acked = ACKED, ts
            rec.delivered = rec.delivered or ts
            rec.attempts = max(rec.attempts, 1)
            return ACKED
        return rec.status

    # -- reads -------------------------------------------------------------------------

    def history(self, channel: str, since: int, limit: int) -> History:
        """Messages with offset > since (oldest first, at most `limit`), and what is kept."""
        kept = self._history.get(channel, deque())
        last = self._last.get(channel, 0)
        messages = [{"channel": channel, "offset": o, "msg": m, "from": s, "ts": ts,
                     "data": json.loads(d)} for o, m, s, ts, d in kept if o > since][:limit]
        return {"messages": messages, "first_offset": kept[0][0] if kept else last + 1,
                "last_offset": last}

    def last_offset(self, channel: str) -> int:
        """The channel's newest offset (0 when it has none)."""
        return self._last.get(channel, 0)

    def pending(self, user: str, ts: int) -> list[dict[str, Any]]:
        """The user's unacked, unexpired personal messages, oldest first."""
        due = [r for r in self._expire(user, ts) if r.status in (PENDING, DELIVERED)]
        return [{"msg": r.msg, "offset": r.offset, "ts": r.created, "data": json.loads(r.data)}
                for r in sorted(due, key=lambda r: r.offset or 0)]

    def records(self, user: str, status: str | None, limit: int,
                ts: int) -> list[dict[str, Any]]:
        """The user's push records, newest first, optionally of one status."""
        mine = [r for r in reversed(self._expire(user, ts)) if status is None or r.status == status]
        mine.sort(key=lambda r: -r.created)  # stable: same-millisecond pushes stay newest first
        return [r.public() for r in mine[:limit]]

    def _expire(self, user: str, ts: int) -> list[_Record]:
        mine = self._by_user.get(user, [])
        for rec in mine:
            if rec.status in (PENDING, DELIVERED) and rec.expires is not None and \
                    rec.expires < ts:
                rec.status = EXPIRED
        return mine

    def revoke(self, user: str, before: int) -> None:
        """Refuse `user`'s tokens issued before `before` (ms); revocations only move on."""
        self._revoked[user] = max(before, self._revoked.get(user, 0))

    def revoked(self, user: str) -> int:
        """Epoch ms before which `user`'s tokens are refused (0: none are)."""
        return self._revoked.get(user, 0)

    def health(self) -> Health:
        """Always up."""
        return {"engine": "memory", "state": "up"}

    def close(self) -> None:
        """Forget everything."""
        self._last.clear()
        self._history.clear()
        self._records.clear()
        self._by_user.clear()
        self._revoked.clear()
        self._keys.clear()
        self._key_order.clear()


def _now_ms() -> int:
    return int(time.time() * 1000)


if TYPE_CHECKING:  # mypy proves each engine implements its contract (engines/base.py)
    from wsapp.realtime.engines.base import Broker, Presence, Store

    _MEMORYSTORE: type[Store] = MemoryStore
    _MEMORYBROKER: type[Broker] = MemoryBroker
    _LOCALPRESENCE: type[Presence] = LocalPresence
