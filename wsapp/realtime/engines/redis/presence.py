"""Global presence: who is in which channel, and who is online, across every process.

Used when the broker is Redis; a single process keeps using the hub's in-memory maps.

Theory of operation. The hub stays the truth about *this* process's connections; Redis holds
a mirror of every process's share, keyed by a random process id:

  <p>pn:<channel>         hash  pid -> connections of that process in the channel
  <p>pc:<pid>:<channel>   hash  user -> that user's connections on that process
  <p>pu:<channel>         hash  user -> that user's connections everywhere (the members)
  <p>online               hash  user -> connections everywhere (users online)
  <p>pch:<pid>            set   channels a process has entries in (for reaping it)
  <p>procs                zset  pid -> heartbeat deadline (Redis clock, ms)
  <p>conns                hash  pid -> connections of that process (from its heartbeat)
  <p>dash                 hash  pid -> "<Redis ms> <JSON>": that process's dashboard counters
  <p>dash:lead            string  the process that publishes the cluster's dashboard ticks

Subscribes and unsubscribes queue small deltas that one writer greenlet sends in batches, each
batch one Lua script: a user's count going 0 -> n anywhere publishes `join`, n -> 0 `leave`,
on the same bus as messages, so events and messages keep their order. Each process beats
every HEARTBEAT seconds (extending its deadline by PROCESS_TTL) and, in the same script, reaps
processes whose deadline passed: their connections are subtracted and `leave` is published
for users who have no connection left. So a process killed with `kill -9` has its users gone
from presence within PROCESS_TTL + HEARTBEAT seconds (the bound the docs state).

Whenever the mirror may be wrong (first start, a Redis outage, Redis restarted empty, or this
process reaped after a long stall) the writer resyncs: one script sets this process's share to
exactly what the hub holds, publishing join/leave only for real changes.
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

from wsapp.realtime.engines.redis.backend import UNREACHABLE, PoolBusy, RedisBackend

if TYPE_CHECKING:
    from wsapp.realtime.hub import Hub

log = logging.getLogger("wsapp.realtime.engines.redis.presence")

HEARTBEAT = 3.0  # seconds between a process's beats
PROCESS_TTL = 10.0  # a process unheard of for this long is reaped: bound = TTL + HEARTBEAT
MAX_BATCH = 2000  # deltas per script call
FLUSH_WAIT = 2.0  # seconds a presence read waits for this process's own queued deltas
STATS_CACHE = 1.0  # seconds the global online figures are reused
DASHBOARD_LEAD = 3.0  # seconds a dashboard publisher leads without renewing (and shares live)
_FAILED = object()  # what _guarded returns when Redis could not answer
DASHBOARD_SUMS = ("connections", "messages_in", "messages_out", "bytes_in", "bytes_out",
                  "slow_consumer_drops")

# Shared by the scripts below: apply a delta `d` of user `u`'s connections in channel `c` on
# process `pid`, publishing join (skip = the client that joined) / leave on a 0 <-> n change.
_DELTA = r"""
local function user_delta(p, bus, pid, c, u, d, skip)
  local pc = p .. 'pc:' .. pid .. ':' .. c
  if redis.call('HINCRBY', pc, u, d) <= 0 then redis.call('HDEL', pc, u) end
  local pu = p .. 'pu:' .. c
  local g = redis.call('HINCRBY', pu, u, d)
  if d > 0 and g == d then
    redis.call('PUBLISH', bus, 'j' .. cjson.encode({c, u, skip}))
  elseif g <= 0 then
    redis.call('HDEL', pu, u)
    if d < 0 and g - d > 0 then
      redis.call('PUBLISH', bus, 'l' .. cjson.encode({c, u}))
    end
  end
  if c == 'user:' .. u then
    if redis.call('HINCRBY', p .. 'online', u, d) <= 0 then
      redis.call('HDEL', p .. 'online', u)
    end
  end
end
local function conn_delta(p, pid, c, d)
  local pn = p .. 'pn:' .. c
  if redis.call('HINCRBY', pn, pid, d) <= 0 then
    redis.call('HDEL', pn, pid)
    redis.call('SREM', p .. 'pch:' .. pid, c)
  end
end
local function reap(p, bus, pid)
  for _, c in ipairs(redis.call('SMEMBERS', p .. 'pch:' .. pid)) do
    redis.call('HDEL', p .. 'pn:' .. c, pid)
    local pc = p .. 'pc:' .. pid .. ':' .. c
    local flat = redis.call('HGETALL', pc)
    for k = 1, #flat, 2 do
      local n = tonumber(flat[k + 1])
      if n > 0 then user_delta(p, bus, pid, c, flat[k], -n, '') end
    end
    redis.call('DEL', pc)
  end
  redis.call('DEL', p .. 'pch:' .. pid)
  redis.call('ZREM', p .. 'procs', pid)
  redis.call('HDEL', p .. 'conns', pid)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: prefix, bus, pid -> removes the process's share (publishing leave events)
LEAVE_LUA = _DELTA + r"""
reap(ARGV[1], ARGV[2], ARGV[3])
return 1
"""

# ARGV: prefix, bus, pid, ttl_ms, then groups of (channel, user|'', skip client|'', delta)
APPLY_LUA = _DELTA + r"""
local p, bus, pid = ARGV[1], ARGV[2], ARGV[3]
local chans = p .. 'pch:' .. pid
-- registered from the first delta on, so a crash before the first beat is reaped too
redis.call('ZADD', p .. 'procs', 'NX', now_ms() + tonumber(ARGV[4]), pid)
for i = 5, #ARGV, 4 do
  local c, u, skip, d = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  redis.call('SADD', chans, c)
  conn_delta(p, pid, c, d)
  if u ~= '' then user_delta(p, bus, pid, c, u, d, skip) end
end
return 1
"""

# ARGV: prefix, bus, pid, ttl_ms, connections -> 1 if this process was still registered
HEARTBEAT_LUA = _DELTA + r"""
local p, bus, pid, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local known = redis.call('ZSCORE', p .. 'procs', pid)
redis.call('ZADD', p .. 'procs', now + ttl, pid)
redis.call('HSET', p .. 'conns', pid, ARGV[5])
local dead = redis.call('ZRANGEBYSCORE', p .. 'procs', '-inf', '(' .. now, 'LIMIT', 0, 10)
for _, other in ipairs(dead) do
  if other ~= pid then reap(p, bus, other) end
end
if known then return 1 end
return 0
"""

# ARGV: prefix, pid, ttl_ms, this process's dashboard share (JSON). Stores the share; if this
# process leads (first to claim, or still holding, the lead key), returns the number of
# channels with a subscriber anywhere and every share younger than ttl_ms (older ones are
# dropped: their process is gone). Else false: the leader publishes the figures.
DASHBOARD_LUA = _DELTA + r"""
local p, pid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call('HSET', p .. 'dash', pid, now .. ' ' .. ARGV[4])
local lead = p .. 'dash:lead'
local holder = redis.call('GET', lead)
if holder and holder ~= pid then return false end
redis.call('SET', lead, pid, 'PX', ttl)
local shares = {}
local flat = redis.call('HGETALL', p .. 'dash')
for k = 1, #flat, 2 do
  local at = tonumber(string.match(flat[k + 1], '^%d+'))
  if now - at > ttl then redis.call('HDEL', p .. 'dash', flat[k])
  else table.insert(shares, flat[k + 1]) end
end
local sets = {}
for _, q in ipairs(redis.call('ZRANGEBYSCORE', p .. 'procs', now, '+inf')) do
  table.insert(sets, p .. 'pch:' .. q)
end
local channels = 0
if #sets > 0 then channels = #redis.call('SUNION', unpack(sets)) end
return {channels, shares}
"""

# ARGV: prefix, bus, pid, ttl_ms, connections, then per channel: name, conns, nusers,
# (user, count) * nusers. Makes this process's share exactly that.
RESYNC_LUA = _DELTA + r"""
local p, bus, pid, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('ZADD', p .. 'procs', now_ms() + ttl, pid)
redis.call('HSET', p .. 'conns', pid, ARGV[5])
local chans = p .. 'pch:' .. pid
local wanted = {}
local i = 6
while i <= #ARGV do
  local c, conns, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local users = {}
  for k = 1, n do users[ARGV[i + 1 + 2 * k]] = tonumber(ARGV[i + 2 + 2 * k]) end
  wanted[c] = {conns, users}
  i = i + 3 + 2 * n
end
for _, c in ipairs(redis.call('SMEMBERS', chans)) do
  if not wanted[c] then wanted[c] = {0, {}} end
end
for c, want in pairs(wanted) do
  local pn = p .. 'pn:' .. c
  if want[1] > 0 then redis.call('HSET', pn, pid, want[1]) else redis.call('HDEL', pn, pid) end
  local pc = p .. 'pc:' .. pid .. ':' .. c
  local flat = redis.call('HGETALL', pc)
  local have = {}
  for k = 1, #flat, 2 do have[flat[k]] = tonumber(flat[k + 1]) end
  for u, n in pairs(want[2]) do
    local d = n - (have[u] or 0)
    if d ~= 0 then user_delta(p, bus, pid, c, u, d, '') end
    have[u] = nil
  end
  for u, n in pairs(have) do
    if n ~= 0 then user_delta(p, bus, pid, c, u, -n, '') end
  end
  if want[1] > 0 then redis.call('SADD', chans, c) else redis.call('SREM', chans, c) end
end
return 1
"""


class GlobalPresence:
    """This process's share of cluster-wide presence, and the cluster-wide view."""

    def __init__(self, backend: RedisBackend, hub: Hub) -> None:
        self.backend = backend
        self.hub = hub
        self.pid = os.urandom(6).hex()
        self._prefix = backend.prefix
        client = backend.client
        self._apply = client.register_script(APPLY_LUA)
        self._beat = client.register_script(HEARTBEAT_LUA)
        self._resync = client.register_script(RESYNC_LUA)
        self._leave = client.register_script(LEAVE_LUA)
        self._dashboard = client.register_script(DASHBOARD_LUA)
        self._ops: list[Any] = []
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        self._need_resync = True
        self._stats: tuple[float, dict] | None = None
        self._closed = False
        self._registered = False
        backend.on_event["j"] = self._on_join
        backend.on_event["l"] = self._on_leave
        backend.on_up.append(self._on_up)
        # A fresh pid has nothing in Redis: deltas can flow at once (the first one registers
        # the process), so every join names its joiner. Resync is for after an outage.
        self._need_resync = False
        self._writer = gevent.spawn(self._write_forever)
        self._heart = gevent.spawn(self._beat_forever)
        self._wake.set()
        atexit.register(self.close)

    # -- local changes -> Redis -------------------------------------------------------------

    def changed(self, channel: str, user: str | None, client_id: str, delta: int) -> None:
        """A connection (of `user`, or anonymous) entered (+1) or left (-1) `channel`."""
        if self._need_resync or not self.backend.up:
            return  # the next resync copies the hub's state as a whole
        self._ops += (channel, user or "", client_id if delta > 0 else "", delta)
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
        args: list[Any] = [self._prefix, self.backend.bus, self.pid, int(PROCESS_TTL * 1000),
                           len(self.hub.clients)]
        members = self.hub.members
        for channel, subs in self.hub.channels.items():
            users = members.get(channel, {})
            args += (channel, len(subs), len(users))
            for user, n in users.items():
                args += (user, n)
        try:
            self._resync(args=args)
            self._registered = True
        except BaseException:
            self._need_resync = True
            raise
        log.info("presence: process %s registered %d channel(s) in Redis", self.pid,
                 len(self.hub.channels))

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
                                         int(PROCESS_TTL * 1000), len(self.hub.clients)])
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
        self.hub.remote_presence_event("join", channel, user, skip)

    def _on_leave(self, payload: str) -> None:
        channel, user = json.loads(payload)
        self.hub.remote_presence_event("leave", channel, user, "")

    # -- reads ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Wait (briefly) until this process's own queued changes are in Redis."""
        if not self._idle.is_set():
            self._idle.wait(FLUSH_WAIT)

    def members(self, channel: str) -> dict | None:
        """Members everywhere (each user once), their count, connections; None when down."""
        if not self.backend.up or self._need_resync:
            return None
        self._flush()
        got = self._read(("hkeys", "pu:" + channel), ("hvals", "pn:" + channel))
        if got is None:
            return None
        users, conns = got
        members = sorted(u.decode("utf-8") for u in users)
        return {"members": members, "count": len(members),
                "connections": sum(int(n) for n in conns)}

    def is_online(self, user: str) -> bool:
        """Whether `user` has a connection on any process (False when Redis is down)."""
        if not self.backend.up:
            return False
        got = self._read(("hexists", "online", user))
        return bool(got and got[0])

    def online(self) -> dict | None:
        """Users online and connections everywhere (cached STATS_CACHE s); None when down."""
        now = time.monotonic()
        if self._stats is not None and now - self._stats[0] < STATS_CACHE:
            return self._stats[1]
        if not self.backend.up:
            return None
        got = self._read(("hlen", "online"), ("hvals", "conns"))
        if got is None:
            return None
        users, conns = got
        figures = {"users": int(users), "connections": sum(int(n) for n in conns)}
        self._stats = (now, figures)
        return figures

    def dashboard(self, local: dict) -> dict | None:
        """The cluster's dashboard figures if this process is the one that publishes them,
        else None; `local` (this process's figures) goes into Redis for the leader to sum.

        While Redis is down each process shows its own figures, to its own subscribers.
        """
        if not self.backend.up:
            return local
        share = json.dumps({k: local.get(k, 0) for k in DASHBOARD_SUMS})
        got = self._guarded(lambda: self._dashboard(
            args=[self._prefix, self.pid, int(DASHBOARD_LEAD * 1000), share]))
        if got is _FAILED:  # down now: local figures; overloaded: skip a tick
            return None if self.backend.up else local
        if not got:
            return None
        channels, shares = got
        figures = dict.fromkeys(DASHBOARD_SUMS, 0)
        for raw in shares:
            counters = json.loads(raw.partition(b" ")[2])
            for k in DASHBOARD_SUMS:
                figures[k] += int(counters.get(k, 0))
        online = self.online()
        figures["users"] = online["users"] if online is not None else local.get("users", 0)
        figures["channels"] = int(channels)
        return figures

    def _read(self, *commands: tuple[str, ...]) -> list | None:
        """Run read commands, each (name, key without prefix, args...), in one round trip.

        None when that fails (see _guarded): the caller shows local figures.
        """
        def run() -> list:
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
            g.kill(block=False)
        if self.backend.up:
            try:
                self._leave(args=[self._prefix, self.backend.bus, self.pid])
            except Exception as exc:  # best effort: the reaper covers what this misses
                log.info("presence: could not deregister process %s: %s", self.pid, exc)
