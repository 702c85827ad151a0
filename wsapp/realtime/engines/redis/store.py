"""The Redis store: history, offsets, personal messages, acks and quotas (engines/base.py).

History is a sorted set per channel (score = offset, member = the delivered envelope), next to
a plain counter for the channel's last offset. Offsets are dense per-channel integers that a
client replays from, so a sorted set is a direct fit: "after offset N" is one ZRANGEBYSCORE,
trimming to history_size is one ZREMRANGEBYSCORE. A stream would force offsets into its
ms-sequence ids and trim by count or id only.

A batch of writes is ONE script (scripts/store_apply.lua): it numbers each message and, when
the bus is read, PUBLISHes it in the same step, so offsets and bus order agree (backend.py).

While Redis is down nothing waits on it: channel publishes come back unnumbered (delivered to
this process's subscribers only, with offset null: not stored, not replayable, not seen by
other processes); status updates are dropped; pushes, acks, history and push records fail at
once with error code `unavailable`; pending personal messages are not sent on connect (they
are still stored and arrive on a later connect). A write cut off mid-way (the connection broke
before the reply) fails with `unavailable` too, saying it may be stored: only a write never
tried can honestly answer "not stored".
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wsapp.realtime.engines.base import Health, History, Job, Replay, job_keep, job_key
from wsapp.realtime.engines.redis.backend import UNREACHABLE, PoolBusy, backend_for, script
from wsapp.realtime.exceptions import StoreUnavailable
from wsapp.realtime.limits import applicable_quotas
from wsapp.realtime.messages import message_raw

RECORD_RETENTION_MS = 8 * 86400 * 1000  # push records outlive their expiry (and quota windows)

_RECORD_KEYS = ("status", "reason", "category", "offset", "created", "delivered", "acked",
                "expires", "attempts")
_INT_FIELDS = {"offset", "created", "delivered", "acked", "expires", "attempts"}


def envelope_parts(channel: str, msg: str, data: str, sender: str | None,
                   ts: int) -> tuple[str, str]:
    """The `message` envelope split around its offset: head + str(offset) + tail."""
    text = message_raw(channel, 1, msg, data, sender, ts)
    marker = ',"offset":1,'
    at = text.index(marker) + len(marker) - 2
    return text[:at], text[at + 1:]


class RedisStore:
    """The Store of engines/base.py, kept in Redis (see the module docstring)."""

    def __init__(self, url: str, history_size: int = 1000, history_ttl: float = 86400.0,
                 key_ttl: float = 86400.0) -> None:
        self.url = url
        self.backend = backend_for(url)
        self.history_size = history_size
        self.history_ttl_ms = max(1, int(history_ttl * 1000))
        self.key_ttl_ms = max(1, int(key_ttl * 1000))
        self._prefix = self.backend.prefix
        self.where = f"Redis ({self.backend.where})"
        client = self.backend.client
        self._apply_script = script(client, "store_apply")
        self._history_script = script(client, "store_history")
        self._pending_script = script(client, "store_pending")
        self._ack_script = script(client, "store_ack")
        self._records_script = script(client, "store_records")
        self._revoke_script = script(client, "store_revoke")
        self._last: dict[str, int] = {}  # offsets this process assigned: a fallback when down
        self.backend.stores_publish = True
        if not self.backend.bus_started:
            self._check()

    def _check(self) -> None:
        """Find out now whether Redis answers (a down backend starts reconnecting)."""
        try:
            self.backend.client.ping()
        except UNREACHABLE as exc:
            self.backend.mark_down(exc)
            return
        if not self.backend.up and self.backend.down_since is None:
            self.backend.up = True

    @property
    def up(self) -> bool:
        """Whether Redis is reachable as far as this process knows."""
        return self.backend.up

    def health(self) -> Health:
        """Up or down as this process last found Redis."""
        return self.backend.health()

    def close(self) -> None:
        """Release the connections (shared with this URL's broker: it closes them too)."""
        self.backend.close()

    # -- writes ----------------------------------------------------------------------------

    def apply(self, jobs: Sequence[Job]) -> list[Any]:
        """Run write jobs in one atomic script, in order; one result per job."""
        if not self.backend.up:
            return self._degraded(jobs)
        args: list[Any] = [self._prefix, int(time.time() * 1000), self.history_size,
                           self.history_ttl_ms,
                           self.backend.bus if self.backend.bus_started else "",
                           RECORD_RETENTION_MS, self.key_ttl_ms]
        for job in jobs:
            kind = job[0]
            scoped = job_key(job) or ""
            if kind == "publish":
                _, channel, msg, sender, ts, data = job[:6]
                head, tail = envelope_parts(channel, msg, data, sender, ts)
                keep = job_keep(job)
                args += ("P", channel, head, tail, scoped, msg, *(keep or ("", "")))
            elif kind == "push":
                _, user, msg, ts, data, category, expires, quotas = job[:8]
                head, tail = envelope_parts(f"user:{user}", msg, data, None, ts)
                caps: list[Any] = []
                for name, limit, window, reason in applicable_quotas(quotas, user, category):
                    key = f"qt:{user}" if name == "total" else f"qc:{user}:{category}"
                    caps += (key, limit, int(window * 1000), reason)
                args += ("U", user, msg, ts, data, category or "",
                         "" if expires is None else expires, head, tail, scoped,
                         len(caps) // 4, *caps)
            elif kind == "delivered":
                _, msgs, ts = job
                args += ("D", ts, len(msgs), *msgs)
            else:
                raise ValueError(f"unknown store job {kind!r}")
        try:
            raw = self._apply_script(args=args)
        except PoolBusy as exc:
            raise StoreUnavailable("this write", self.where, f"overloaded ({exc})") \
                from None
        except UNREACHABLE as exc:
            self.backend.mark_down(exc)
            # The script may have run (and published) before the reply was lost: no answer
            # here may say "not stored" (offset null), so the whole batch fails as "may be
            # stored". The subscribers still get it if it was: the bus catch-up sees to that.
            raise StoreUnavailable("this write (the connection broke during it, so it may be "
                                   "stored)", self.where) from None
        results: list[Any] = []
        for job, value in zip(jobs, raw, strict=True):
            kind = job[0]
            if isinstance(value, list) and value and value[0] == b"K":
                results.append(Replay.decode(value[1]))  # a known key: nothing was written
            elif kind == "publish":
                self._remember(job[1], value)
                results.append(value)
            elif kind == "push":
                status, reason, offset = value
                status = status.decode() if isinstance(status, bytes) else status
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8")
                if offset is not None:
                    self._remember(f"user:{job[1]}", offset)
                results.append((status, reason, offset))
            else:
                results.append(None)
        return results

    def _remember(self, channel: str, offset: int) -> None:
        if len(self._last) > 50_000:  # bounded: a fallback, not a cache we rely on
            self._last.clear()
        self._last[channel] = offset

    def _degraded(self, jobs: Sequence[Job]) -> list[Any]:
        """Redis was down before the write was tried: publishes are not stored (offset None:
        this process's subscribers only); pushes and keyed publishes fail (they must be
        kept: a key promises the write is remembered)."""
        if any(job[0] == "push" or job_key(job) for job in jobs):
            raise StoreUnavailable("storing a push or a keyed publish", self.where)
        return [None for _ in jobs]

    def ack(self, user: str, msg: str, ts: int) -> str | None:
        """Mark `msg` acked if it is `user`'s; its status after, None if not found."""
        value = self._call("an ack", self._ack_script, [self._prefix, user, msg, ts])
        return value.decode() if isinstance(value, bytes) else value

    def revoke(self, user: str, before: int) -> None:
        """Refuse `user`'s tokens issued before `before` (ms); revocations only move on."""
        self._call("revoking tokens", self._revoke_script, [self._prefix, user, before])

    def revoked(self, user: str) -> int:
        """Epoch ms before which `user`'s tokens are refused (0: none are). Read on every
        connect, so in the same pipelined batches as the rest of a reconnect storm. While
        Redis is down or overloaded nothing is known to be revoked: connections keep working
        through an outage, and a token still expires as usual."""
        if self.backend.up:
            try:
                value = self.backend.batched(None, key=self._prefix + "rv:" + user)
                return int(value) if value is not None else 0
            except PoolBusy:
                pass
            except UNREACHABLE as exc:
                self.backend.mark_down(exc)
        return 0

    # -- reads -----------------------------------------------------------------------------

    def _call(self, what: str, script: Any, args: list) -> Any:
        if not self.backend.up:
            raise StoreUnavailable(what, self.where)
        try:
            return script(args=args)
        except PoolBusy as exc:
            raise StoreUnavailable(what, self.where, f"overloaded ({exc})") from None
        except UNREACHABLE as exc:
            self.backend.mark_down(exc)
            raise StoreUnavailable(what, self.where) from None

    def history(self, channel: str, since: int, limit: int) -> History:
        """Messages with offset > since (oldest first, at most `limit`), and what is kept."""
        barrier = self.backend.barrier()
        token = barrier[0] if barrier else ""
        try:
            raw = self._call("history", self._history_script,
                             [self._prefix, channel, since, limit,
                              self.backend.bus if barrier else "", token])
        except BaseException:
            if barrier:
                self.backend.wait_barrier(token, barrier[1], False)
            raise
        last, first, waited = int(raw[0]), raw[1], raw[2]
        if barrier:
            self.backend.wait_barrier(token, barrier[1], bool(waited))
        messages = []
        for text in raw[3:]:
            m = json.loads(text)
            messages.append({"channel": channel, "offset": m["offset"], "msg": m["msg"],
                             "from": m["from"], "ts": m["ts"], "data": m["data"]})
        return {"messages": messages,
                "first_offset": int(float(first)) if first is not None else last + 1,
                "last_offset": last}

    def last_offset(self, channel: str) -> int:
        """The channel's newest offset (0 when it has none; the last known one when down)."""
        if self.backend.up:
            try:
                value = self.backend.batched(None, key=self._prefix + "o:" + channel)
                return int(value) if value is not None else 0
            except PoolBusy:
                pass  # overloaded: the last offset this process knows will do
            except UNREACHABLE as exc:
                self.backend.mark_down(exc)
        return self._last.get(channel, 0)

    def pending(self, user: str, ts: int) -> list[dict]:
        """The user's unacked, unexpired personal messages, oldest first ([] when down)."""
        if not self.backend.up:
            return []
        barrier = self.backend.barrier()
        token = barrier[0] if barrier else ""
        try:
            raw = self.backend.batched(self._pending_script,
                                       [self._prefix, user, ts, 1,
                                        self.backend.bus if barrier else "", token])
        except PoolBusy:
            if barrier:
                self.backend.wait_barrier(token, barrier[1], False)
            return []  # overloaded: they stay due and come with the next connect
        except UNREACHABLE as exc:
            if barrier:
                self.backend.wait_barrier(token, barrier[1], False)
            self.backend.mark_down(exc)
            return []
        if barrier:
            self.backend.wait_barrier(token, barrier[1], bool(raw))
        out = []
        for k in range(0, len(raw), 4):
            msg, offset, created, data = raw[k:k + 4]
            out.append({"msg": msg.decode(), "offset": int(offset), "ts": int(created),
                        "data": json.loads(data)})
        return out

    def records(self, user: str, status: str | None, limit: int, ts: int) -> list[dict]:
        """The user's push records, newest first, optionally of one status."""
        self._call("push records", self._pending_script, [self._prefix, user, ts, 0, "", ""])
        raw = self._call("push records", self._records_script,
                         [self._prefix, user, status or "", limit])
        out = []
        for k in range(0, len(raw), 11):
            row = raw[k:k + 11]
            record: dict[str, Any] = {"msg": row[0].decode()}
            for name, value in zip(_RECORD_KEYS, row[1:10], strict=True):
                if value is not None:
                    value = int(value) if name in _INT_FIELDS else value.decode("utf-8")
                record[name] = value
            if record["attempts"] is None:
                record["attempts"] = 0
            record["data"] = json.loads(row[10])
            out.append(record)
        return out


if TYPE_CHECKING:  # mypy proves each engine implements its contract (engines/base.py)
    from wsapp.realtime.engines.base import Store

    _REDISSTORE: type[Store] = RedisStore
