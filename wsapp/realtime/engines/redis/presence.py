"""Redis presence: who is in which channel and who is online across every process, and
figures every process shares (the Presence of engines/base.py).

Theory of operation. The hub stays the truth about *this* process's connections (read through
the LocalView it is started with); Redis holds a mirror of every process's share, keyed by a
random process id:

  <p>pn:<channel>         hash  pid -> connections of that process in the channel
  <p>pc:<pid>:<channel>   hash  user -> that user's connections on that process
  <p>pu:<channel>         hash  user -> that user's connections everywhere (the members)
  <p>online               hash  user -> connections everywhere (users online)
  <p>pch:<pid>            set   channels a process has entries in (for reaping it)
  <p>procs                zset  pid -> heartbeat deadline (Redis clock, ms)
  <p>conns                hash  pid -> connections of that process (from its heartbeat)
  <p>stats:<name>         hash  pid -> "<Redis ms> <JSON>": that process's share of a figure set
  <p>stats:<name>:lead    string  the process that reports that figure set (gather())

Subscribes and unsubscribes queue small deltas that one writer greenlet sends in batches, each
batch one Lua script: a user's count going 0 -> n anywhere publishes `join`, n -> 0 `leave`,
on the same bus as messages, so events and messages keep their order. Each process beats
every HEARTBEAT seconds (extending its deadline by PROCESS_TTL) and, in the same script, reaps
processes whose deadline passed: their connections are subtracted and `leave` is published
for users who have no connection left. So a process killed with `kill -9` has its users gone
from presence within PROCESS_TTL + HEARTBEAT seconds (the bound the docs state).

Whenever the mirror may be wrong (first start, a Redis outage, Redis restarted empty, or this
process reaped after a long stall) the writer resyncs: one script sets this process's share to
exactly what the hub holds, publishing join/leave only for real changes. While Redis is down
every read answers from this process's own view.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

from wsapp.realtime.engines.base import Health, LocalView, PresenceHandler
from wsapp.realtime.engines.memory import LocalPresence
from wsapp.realtime.engines.redis.backend import UNREACHABLE, PoolBusy, backend_for, script

log = logging.getLogger(__name__)

HEARTBEAT = 3.0  # seconds between a process's beats
PROCESS_TTL = 10.0  # a process unheard of for this long is reaped: bound = TTL + HEARTBEAT
MAX_BATCH = 2000  # deltas per script call
FLUSH_WAIT = 2.0  # seconds a presence read waits for this process's own queued deltas
STATS_CACHE = 1.0  # seconds the global online figures are reused
_FAILED = object()  # what _guarded returns when Redis could not answer


class RedisPresence:
    """This process's share of cluster-wide presence, and the cluster-wide view."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = backend = backend_for(url)
        self.pid = os.urandom(6).hex()
        self._prefix = backend.prefix
        client = backend.client
        lib = "presence_lib"
        self._apply = script(client, "presence_apply", lib)
        self._beat = script(client, "presence_heartbeat", lib)
        self._resync = script(client, "presence_resync", lib)
        self._leave = script(client, "presence_leave", lib)
        self._gather = script(client, "presence_gather", lib)
        self._channels = script(client, "presence_channels", lib)
        # While Redis is down every read answers from this process's own view.
        self._here = LocalPresence()
        self._local: LocalView | None = None
        self._handler: PresenceHandler | None = None
        self._ops: list[Any] = []
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        # A fresh pid has nothing in Redis: deltas can flow at once (the first one registers
        # the process), so every join names its joiner. Resync is for after an outage.
        self._need_resync = False
        self._stats: tuple[float, int] | None = None
        self._closed = False
        self._registered = False
        self._writer: gevent.Greenlet | None = None
        self._heart: gevent.Greenlet | None = None

    def start(self, local: LocalView, handler: PresenceHandler) -> None:
        """Mirror `local` into Redis and send the bus's join/leave events to `handler`."""
        if self._local is not None:
            return
        self._local, self._handler = local, handler
        self._here.start(local, handler)
        backend = self.backend
        backend.on_event["j"] = self._on_join
        backend.on_event["l"] = self._on_leave
        backend.start_bus()  # join and leave come back over the bus, from whichever process
        backend.on_up.append(self._on_up)
        self._writer = gevent.spawn(self._write_forever)
        self._heart = gevent.spawn(self._beat_forever)
        self._wake.set()
        atexit.register(self.close)

    def _view(self) -> LocalView:
        if self._local is None:
            raise RuntimeError("presence used before start()")
        return self._local

    # -- local changes -> Redis -------------------------------------------------------------

    def changed(self, channel: str, user: str | None, client: str, delta: int) -> None:
        """A connection (of `user`, or anonymous) entered (+1) or left (-1) `channel`."""
        if self._need_resync or not self.backend.up:
            return  # the next resync copies the hub's state as a whole
        self._ops += (channel, user or "", client if delta > 0 else "", delta)
        self._idle.clear()
        self._wake.set()

    def _write_forever(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            try:
                if self.backend.up:
                    if self._need_resync:
                        self._do_resync()
                    while self._ops and not self._need_resync:
                        batch = self._ops[:MAX_BATCH * 4]
                        del self._ops[:MAX_BATCH * 4]
                        self._apply(args=[self._prefix, self.backend.bus, self.pid,
                                          int(PROCESS_TTL * 1000), *batch])
                        self._registered = True
            except UNREACHABLE as exc:
                self._ops.clear()
                self._need_resync = True
                self.backend.mark_down(exc)
            except PoolBusy as exc:  # overload: catch up with one resync a moment later
                log.warning("presence: %s; resyncing in 1s", exc)
                self._ops.clear()
                self._need_resync = True
                gevent.sleep(1.0)
                self._wake.set()
            except Exception:  # a bug: resync from the hub rather than drift for good
                log.exception("presence write failed; resyncing")
                self._ops.clear()
                self._need_resync = True
                gevent.sleep(1.0)
                self._wake.set()
            if not self._ops:
                self._idle.set()

    def _do_resync(self) -> None:
        """Make this process's share in Redis exactly what the hub holds now."""
        # Snapshot and queue reset happen with no yield between: deltas queued before the
        # snapshot are in it, those after it follow it.
        self._ops.clear()
        self._need_resync = False
        local = self._view()
        args: list[Any] = [self._prefix, self.backend.bus, self.pid, int(PROCESS_TTL * 1000),
                           local.connection_count()]
        channels = 0
        for channel in local.local_channels():
            users = local.local_members(channel)
            args += (channel, local.local_connections(channel), len(users))
            for user, n in users.items():
                args += (user, n)
            channels += 1
        try:
            self._resync(args=args)
            self._registered = True
        except BaseException:
            self._need_resync = True
            raise
        log.info("presence: process %s registered %d channel(s) in Redis", self.pid, channels)

    def _on_up(self) -> None:
        self._need_resync = True
        self._wake.set()

    def _beat_forever(self) -> None:
        while not self._closed:
            gevent.sleep(HEARTBEAT)
            if not self.backend.up:
                continue
            try:
                known = self._beat(args=[self._prefix, self.backend.bus, self.pid,
                                         int(PROCESS_TTL * 1000),
                                         self._view().connection_count()])
            except UNREACHABLE as exc:
                self._need_resync = True
                self.backend.mark_down(exc)
                continue
            except PoolBusy:
                continue  # the lease outlives a few missed beats
            except Exception:
                log.exception("presence heartbeat failed")
                continue
            if not known and not self._registered:
                self._registered = True  # nothing sent yet: the beat just registered us
            elif not known and not self._need_resync:
                log.warning("presence: process %s was not registered in Redis (restarted, "
                            "or this process was reaped after a stall); resyncing", self.pid)
                self._need_resync = True
                self._wake.set()

    # -- Redis -> local subscribers -----------------------------------------------------------

    def _on_join(self, payload: str) -> None:
        channel, user, skip = json.loads(payload)
        if self._handler is not None:
            self._handler.presence_event("join", channel, user, skip)

    def _on_leave(self, payload: str) -> None:
        channel, user = json.loads(payload)
        if self._handler is not None:
            self._handler.presence_event("leave", channel, user, "")

    # -- reads ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Wait (briefly) until this process's own queued changes are in Redis."""
        if not self._idle.is_set():
            self._idle.wait(FLUSH_WAIT)

    def members(self, channel: str) -> dict[str, Any]:
        """Members everywhere (each user once), their count, connections; this process's
        alone while Redis is down."""
        if self.backend.up and not self._need_resync:
            self._flush()
            got = self._read(("hkeys", "pu:" + channel), ("hvals", "pn:" + channel))
            if got is not None:
                users, conns = got
                members = sorted(u.decode("utf-8") for u in users)
                return {"members": members, "count": len(members),
                        "connections": sum(int(n) for n in conns)}
        return self._here.members(channel)

    def is_online(self, user: str) -> bool:
        """Whether `user` has a connection here or, as far as Redis knows, on any process."""
        if self._view().local_online(user):
            return True
        if not self.backend.up:
            return False
        got = self._read(("hexists", "online", user))
        return bool(got and got[0])

    def online_users(self) -> int:
        """Users online everywhere (cached STATS_CACHE s); this process's while Redis is down."""
        now = time.monotonic()
        if self._stats is not None and now - self._stats[0] < STATS_CACHE:
            return self._stats[1]
        got = self._read(("hlen", "online")) if self.backend.up else None
        if got is None:
            return self._here.online_users()
        self._stats = (now, int(got[0]))
        return self._stats[1]

    def channel_count(self) -> int:
        """Channels with a connection on any live process; this process's while Redis is
        down. O(channels) in Redis: meant for a figure read once a second, not per message."""
        got: Any = self._guarded(lambda: self._channels(args=[self._prefix])) \
            if self.backend.up else _FAILED
        return self._here.channel_count() if got is _FAILED else int(got)

    def gather(self, name: str, share: dict[str, Any], lease: float) -> list[dict[str, Any]] | None:
        """Share this process's figures of set `name`; all shares if this process reports it.

        While Redis is down each process reports its own figures, to its own subscribers;
        while it is overloaded nobody reports (a skipped tick).
        """
        if not self.backend.up:
            return [share]
        got = self._guarded(lambda: self._gather(
            args=[self._prefix, self.pid, int(lease * 1000), name, json.dumps(share)]))
        if got is _FAILED:  # down now: our own figures; overloaded: skip
            return None if self.backend.up else [share]
        if not got:
            return None
        return [json.loads(raw.partition(b" ")[2]) for raw in got]

    def health(self) -> Health:
        """Up or down as this process last found Redis."""
        return self.backend.health()

    def _read(self, *commands: tuple[str, ...]) -> list[Any] | None:
        """Run read commands, each (name, key without prefix, args...), in one round trip.

        None when that fails (see _guarded): the caller shows local figures.
        """
        def run() -> list[Any]:
            pipe = self.backend.client.pipeline(transaction=False)
            for name, key, *args in commands:
                getattr(pipe, name)(self._prefix + key, *args)
            return pipe.execute()

        got = self._guarded(run)
        return None if got is _FAILED else got

    def _guarded(self, call: Callable[[], Any]) -> Any:
        """`call()`, or _FAILED when the pool is busy (overload) or Redis is unreachable
        (then marked down, which starts the reconnect and the resync after it)."""
        try:
            return call()
        except PoolBusy:
            return _FAILED
        except UNREACHABLE as exc:
            self.backend.mark_down(exc)
            return _FAILED

    def close(self) -> None:
        """Stop beating and writing, and take this process's share out of Redis at once.

        Runs at interpreter exit too, so a graceful stop does not leave its users listed
        until the reaper's bound; a crash relies on the reaper.
        """
        if self._closed:
            return
        self._closed = True
        for g in (self._writer, self._heart):
            if g is not None:
                g.kill(block=False)
        if self.backend.up:
            try:
                self._leave(args=[self._prefix, self.backend.bus, self.pid])
            except Exception as exc:  # best effort: the reaper covers what this misses
                log.info("presence: could not deregister process %s: %s", self.pid, exc)


if TYPE_CHECKING:  # mypy proves each engine implements its contract (engines/base.py)
    from wsapp.realtime.engines.base import Presence

    _REDISPRESENCE: type[Presence] = RedisPresence
