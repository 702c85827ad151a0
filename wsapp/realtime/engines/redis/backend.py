"""Redis: the store (history, offsets, personal messages, quotas) and broker for many processes.

Theory of operation. Every process that names the same Redis URL shares one `RedisBackend`:
a command connection pool and ONE pub/sub connection subscribed to a single bus channel
(`<prefix>bus`), read by one greenlet. Everything that must reach every process travels on
that bus, in the order Redis executed it:

* a channel message or personal push is appended to the channel's history and PUBLISHed to
  the bus by the same Lua script that numbers it, so Redis orders offsets and bus messages
  identically: every process hands a channel's messages to its subscribers in offset order,
  however many processes publish at once;
* a process delivers its own publishes from the bus too, never directly: each subscriber
  sees each message exactly once, and in the same order as everybody else;
* a read that recovery depends on (history, pending personal messages) publishes a barrier
  token in the same script, and returns only when the bus reader has passed it, so every
  message stored before the read has already reached the hub (and was held by its replay
  logic) before the replay ends: no duplicate at the recovery seam;
* presence events (presence.py) share the bus, so they are ordered with messages.

History is a sorted set per channel (score = offset, member = the delivered envelope), next to
a plain counter for the channel's last offset. Offsets are dense per-channel integers that a
client replays from, so a sorted set is a direct fit: "after offset N" is one ZRANGEBYSCORE,
trimming to history_size is one ZREMRANGEBYSCORE. A stream would force offsets into its
ms-sequence ids and trim by count or id only.

Messages that are not stored (`"offset": null`: live feeds published with persist=False)
are PUBLISHed to the bus by the broker itself.

Outage. When a Redis call fails the backend goes *down* (logged once), closes its pool and
retries with exponential backoff and jitter until Redis answers and the bus is subscribed
again (logged once). While down nothing waits on Redis: channel publishes are delivered to
this process's subscribers only, with offset null (not stored, not replayable, not seen by
other processes); status updates are dropped; pushes, acks, history and push records fail at
once with error code `unavailable`; pending personal messages are not sent on connect (they
are still stored and arrive on a later connect). See docs/deploying.md.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import gevent
import redis
from gevent.event import AsyncResult, Event
from redis.backoff import NoBackoff
from redis.retry import Retry

from wsapp.realtime.engines.sqlite import _window_name
from wsapp.realtime.messages import RequestError, dumps, message_raw

log = logging.getLogger("wsapp.redis")

# The errors that mean "Redis is not reachable" (BusyLoadingError is a ConnectionError).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)

COMMAND_TIMEOUT = 10.0  # seconds: our commands take microseconds; a stall this long is an outage
CONNECT_TIMEOUT = 2.0
POOL_SIZE = 64  # greenlets beyond this wait (cooperatively) for a connection
POOL_WAIT = 10.0  # ...for at most this long: backpressure under load, not an outage
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0
BARRIER_WAIT = 3.0  # seconds a recovery read waits for the bus reader to pass its barrier
PROBE_EVERY = 5.0  # seconds between checks that the bus connection still delivers
PROBE_MISSES = 2  # probes in a row unanswered before the bus is declared dead
BATCH = 500  # reads coalesced into one pipeline
RECORD_RETENTION_MS = 8 * 86400 * 1000  # push records outlive their expiry (and quota windows)


class StoreUnavailable(RequestError):
    """Redis is unreachable: the operation was not done (error code `unavailable`)."""

    def __init__(self, what: str, url: str, why: str = "unreachable") -> None:
        super().__init__("unavailable", f"{what} needs Redis ({url}), which is {why} "
                         "right now; retry later")


class PoolBusy(redis.RedisError):
    """Every pooled connection stayed busy for POOL_WAIT seconds: overload, not an outage."""


class _Pool(redis.BlockingConnectionPool):
    """A blocking pool whose timeout is told apart from a broken connection."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)
        except redis.ConnectionError as exc:
            if str(exc).startswith("No connection available"):
                raise PoolBusy(f"all {self.max_connections} Redis connections busy for "
                               f"{self.timeout:.0f}s") from None
            raise


def split_url(url: str) -> tuple[str, str]:
    """(redis-py URL, key prefix): `?prefix=name` picks the key prefix (default `wsapp`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "wsapp"
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value or prefix
        else:
            rest.append((key, value))
    clean = urlunsplit(parts._replace(query=urlencode(rest)))
    return clean, prefix + ":"


def redact(url: str) -> str:
    """The URL without a password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


# -- the shared connection ---------------------------------------------------------------


class RedisBackend:
    """One Redis URL in one process: the command pool, the bus reader, up/down state."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        clean, self.prefix = split_url(url)
        self.bus = self.prefix + "bus"
        # Fail fast, never retry inside redis-py: a retried script could run twice.
        no_retry = Retry(NoBackoff(), 0)
        pool = _Pool.from_url(
            clean, max_connections=POOL_SIZE, timeout=POOL_WAIT,
            socket_timeout=COMMAND_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True, retry=no_retry)
        self.client = redis.Redis(connection_pool=pool)
        # The bus connection blocks in reads while idle: no read timeout; the probe and TCP
        # keepalive find a dead one.
        self._bus_client = redis.Redis.from_url(
            clean, socket_timeout=None, socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True, retry=no_retry)
        self.up = False
        self.down_since: float | None = None
        self.on_message: list[Callable[[str, str], None]] = []
        self.on_event: dict[str, Callable[[str], None]] = {}  # kind letter -> handler
        self.on_up: list[Callable[[], None]] = []
        self._barriers: dict[str, AsyncResult] = {}
        self._batch: list[tuple[Any, Any, AsyncResult]] = []  # see batched()
        self._batch_wake = Event()
        self._batcher: gevent.Greenlet | None = None
        self._pubsub: Any = None
        self._reader: gevent.Greenlet | None = None
        self._reconnector: gevent.Greenlet | None = None
        self._prober: gevent.Greenlet | None = None
        self._attempts = 0
        self._closed = False
        self.bus_started = False  # a broker is attached: scripts publish to the bus
        self._starting = Event()
        self._starting.set()
        self.stores_publish = False  # a RedisStore here publishes what it numbers

    # -- state ---------------------------------------------------------------------------

    def start_bus(self) -> None:
        """Subscribe to the bus (once); from then on scripts publish to it."""
        if self.bus_started:
            # Another greenlet is subscribing: wait for it, or this caller would publish
            # before the bus is read (and see the backend as down).
            self._starting.wait(CONNECT_TIMEOUT * 2)
            return
        self.bus_started = True
        self._starting.clear()
        try:
            self._subscribe()
        except UNREACHABLE as exc:
            self.mark_down(exc)
            return
        finally:
            self._starting.set()
        self._set_up()

    def mark_down(self, exc: BaseException | str) -> None:
        """Redis failed: log once, drop connections, reconnect in the background."""
        if self._closed:
            return
        if self.up or self.down_since is None:
            self.up = False
            self.down_since = time.monotonic()
            log.warning("Redis %s unreachable (%s): delivering to this process's subscribers "
                        "only; pushes, acks and history fail until it is back", self.where,
                        _describe(exc))
            self._drop_connections()
        if self._reconnector is None or self._reconnector.dead:
            self._reconnector = gevent.spawn(self._reconnect)

    def _set_up(self) -> None:
        was_down = self.down_since
        self.up = True
        self.down_since = None
        self._attempts = 0
        if was_down is not None:
            log.warning("Redis %s reachable again after %.1fs: cross-process delivery "
                        "resumed", self.where, time.monotonic() - was_down)
        else:
            log.info("Redis %s connected (bus %s)", self.where, self.bus)
        for callback in list(self.on_up):
            try:
                callback()
            except Exception:  # one listener's bug must not stop the others
                log.exception("Redis reconnect callback failed")
        if self.bus_started and (self._prober is None or self._prober.dead):
            self._prober = gevent.spawn(self._probe_forever)

    def _drop_connections(self) -> None:
        try:
            # Idle ones only: closing a socket another greenlet is reading breaks its
            # parser; in-use ones fail on their own, and stale ones are replaced on checkout.
            self.client.connection_pool.disconnect(inuse_connections=False)
        except Exception:  # closing dead sockets can fail in many ways; none matter
            pass
        # Forget the bus connection first: its reader sees it is no longer current and
        # exits quietly when the socket closes under it.
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)
        if pubsub is not None:
            try:
                pubsub.reset()
            except Exception:
                pass
        for waiter in self._barriers.values():
            waiter.set(False)
        self._barriers.clear()

    def _reconnect(self) -> None:
        """Exponential backoff with jitter until a PING and the bus subscription succeed."""
        delay = BACKOFF_FIRST
        while not self._closed and not self.up:
            gevent.sleep(delay * random.uniform(0.5, 1.5))
            self._attempts += 1
            try:
                self.client.ping()
                if self.bus_started:
                    self._subscribe()
            except (*UNREACHABLE, redis.RedisError) as exc:  # this loop must never die
                log.debug("Redis %s still unreachable (attempt %d): %s", self.where,
                          self._attempts, _describe(exc))
                self._drop_connections()
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self._set_up()  # the loop goes on if a callback found Redis gone again

    def _probe_forever(self) -> None:
        """While up, check now and then that the bus still delivers (a silent dead socket)."""
        misses = 0
        while not self._closed and self.up:
            gevent.sleep(PROBE_EVERY)
            if not self.up or not self.bus_started:
                continue
            token = "probe" + os.urandom(6).hex()
            waiter = self._barriers[token] = AsyncResult()
            try:
                self.client.publish(self.bus, "b" + token)
                ok = waiter.get(timeout=PROBE_EVERY)
            except gevent.Timeout:
                ok = False
            except PoolBusy:
                self._barriers.pop(token, None)
                continue  # overloaded, not broken: probe again next time
            except UNREACHABLE as exc:
                self._barriers.pop(token, None)
                self.mark_down(exc)
                return
            self._barriers.pop(token, None)
            misses = 0 if ok else misses + 1
            if misses >= PROBE_MISSES and self.up:  # one miss may be a stall under load
                self.mark_down("the bus connection stopped delivering")
                return

    # -- the bus ---------------------------------------------------------------------------

    def _subscribe(self) -> None:
        """Subscribe a fresh bus connection and start its reader once Redis confirmed it."""
        pubsub = self._bus_client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.bus)
            # Redis answers in order: the PONG proves the SUBSCRIBE is in effect.
            pubsub.ping()
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise redis.TimeoutError("bus subscription not confirmed in time")
                reply = pubsub.get_message(timeout=left)
                if reply is None:
                    continue
                if reply.get("type") == "pong":
                    break
                if reply.get("type") == "message":
                    self.dispatch(reply["data"])
        except BaseException:
            try:
                pubsub.reset()
            except Exception:
                pass
            raise
        self._pubsub = pubsub
        self._reader = gevent.spawn(self._read, pubsub)

    def _read(self, pubsub: Any) -> None:
        try:
            for item in pubsub.listen():
                if item.get("type") != "message":
                    continue
                self.dispatch(item["data"])
        except Exception as exc:
            if self._pubsub is not pubsub:
                return  # dropped on purpose (an outage seen elsewhere, or close)
            self._reader = None
            if not isinstance(exc, UNREACHABLE):  # a bug: say so, then reconnect
                log.exception("bus reader failed")
            self.mark_down(exc)

    def dispatch(self, payload: bytes | str) -> None:
        """Route one bus payload: m<channel>\\n<text>, b<token>, or a handler's letter."""
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8")
        kind = payload[:1]
        if kind == "m":
            channel, _, text = payload[1:].partition("\n")
            for deliver in self.on_message:
                try:
                    deliver(channel, text)
                except Exception:
                    log.exception("delivery of a bus message on %s failed", channel)
        elif kind == "b":
            waiter = self._barriers.get(payload[1:])
            if waiter is not None:
                waiter.set(True)
        else:
            handler = self.on_event.get(kind)
            if handler is not None:
                try:
                    handler(payload[1:])
                except Exception:
                    log.exception("bus event %r failed", kind)

    # -- coalesced reads -----------------------------------------------------------------------

    def batched(self, script: Any, args: list | None = None, key: str | None = None) -> Any:
        """Run a script (or GET `key`) in the next pipelined batch; its result.

        Every connect reads pending messages and every subscribe the last offset: in a
        storm of thousands at once, one pipeline per batch uses one pooled connection and a
        few syscalls instead of one connection and round trip each.
        """
        result = AsyncResult()
        self._batch.append((script, args if script is not None else key, result))
        self._batch_wake.set()
        if self._batcher is None or self._batcher.dead:
            self._batcher = gevent.spawn(self._run_batches)
        return result.get()

    def _run_batches(self) -> None:
        while not self._closed:
            self._batch_wake.wait()
            self._batch_wake.clear()
            while self._batch:
                items, self._batch = self._batch[:BATCH], self._batch[BATCH:]
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for script, args, _ in items:
                        if script is None:
                            pipe.get(args)
                        else:
                            script(args=args, client=pipe)
                    values = pipe.execute(raise_on_error=False)
                except Exception as exc:  # the callers decide what an error means
                    for _, _, result in items:
                        result.set_exception(exc)
                    continue
                for (_, _, result), value in zip(items, values, strict=True):
                    if isinstance(value, Exception):
                        result.set_exception(value)
                    else:
                        result.set(value)

    def barrier(self) -> tuple[str, AsyncResult] | None:
        """A fresh barrier token to publish in a script, or None when no bus is read."""
        if not self.bus_started or not self.up:
            return None
        token = os.urandom(8).hex()
        waiter = self._barriers[token] = AsyncResult()
        return token, waiter

    def wait_barrier(self, token: str, waiter: AsyncResult, needed: bool) -> None:
        """Wait until the bus reader passed `token` (only when the read returned data)."""
        try:
            if needed:
                try:
                    waiter.get(timeout=BARRIER_WAIT)
                except gevent.Timeout:
                    log.warning("bus barrier not seen in %.1fs; a replayed message may be "
                                "delivered twice", BARRIER_WAIT)
        finally:
            self._barriers.pop(token, None)

    def close(self) -> None:
        """Stop the reader and the reconnect loop; close every connection."""
        self._closed = True
        for g in (self._reconnector, self._prober, self._reader, self._batcher):
            if g is not None and g is not gevent.getcurrent():
                g.kill(block=False)
        self._drop_connections()
        _BACKENDS.pop(self.url, None)


_BACKENDS: dict[str, RedisBackend] = {}


def backend_for(url: str) -> RedisBackend:
    """The process's backend for `url` (store, broker and presence share it)."""
    backend = _BACKENDS.get(url)
    if backend is None:
        backend = _BACKENDS[url] = RedisBackend(url)
    return backend


def _describe(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- Lua -------------------------------------------------------------------------------------

# ARGV: prefix, now_ms, history_size, history_ttl_ms, bus ('' = do not publish), retention_ms,
# then jobs, each a kind letter and its fields:
#   P channel head tail                       -> offset
#   U user msg ts data category expires head tail nquotas [key limit window_ms reason]...
#                                            -> {status, reason|false, offset|false}
#   D ts n msg...                             -> 0
# The envelope of a message is head .. offset .. tail (built by message_raw in Python).
APPLY_LUA = r"""
local p, now = ARGV[1], tonumber(ARGV[2])
local hsize, httl = tonumber(ARGV[3]), tonumber(ARGV[4])
local bus, keep = ARGV[5], tonumber(ARGV[6])
local results, touched = {}, {}

local function append(channel, head, tail)
  local off = redis.call('INCR', p .. 'o:' .. channel)
  local text = head .. off .. tail
  redis.call('ZADD', p .. 'h:' .. channel, off, text)
  if bus ~= '' then redis.call('PUBLISH', bus, 'm' .. channel .. '\n' .. text) end
  touched[channel] = off
  return off
end

local i = 7
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'P' then
    results[#results + 1] = append(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif kind == 'U' then
    local user, msg, ts, data = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
    local ts_s = ARGV[i + 3]
    local cat, exp, head, tail = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    local nq = tonumber(ARGV[i + 9])
    i = i + 10
    local reason = false
    for q = 1, nq do
      local key, limit, window, why = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
        ARGV[i + 3]
      i = i + 4
      if not reason and redis.call('ZCOUNT', p .. key, ts - window, '+inf') >= limit then
        reason = why
      end
    end
    local rec = p .. 'r:' .. msg
    local fields = {'user', user, 'data', data, 'created', ts, 'attempts', 0}
    if cat ~= '' then fields[#fields + 1] = 'category'; fields[#fields + 1] = cat end
    if exp ~= '' then fields[#fields + 1] = 'expires'; fields[#fields + 1] = exp end
    -- Scores are built as strings: Lua would print a 16-digit number in exponent form.
    local seq = redis.call('INCR', p .. 'seq') % 1000
    local index = p .. 'ur:' .. user
    redis.call('ZADD', index, ts_s .. string.format('%03d', seq), msg)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('%d000', now - keep))
    redis.call('PEXPIRE', index, keep)
    local until_ms = math.max(tonumber(exp) or ts, ts) - now + keep
    if reason then
      fields[#fields + 1] = 'status'; fields[#fields + 1] = 'suppressed'
      fields[#fields + 1] = 'reason'; fields[#fields + 1] = reason
      redis.call('HSET', rec, unpack(fields))
      redis.call('PEXPIRE', rec, math.max(until_ms, 1000))
      results[#results + 1] = {'suppressed', reason, false}
    else
      local off = append('user:' .. user, head, tail)
      fields[#fields + 1] = 'status'; fields[#fields + 1] = 'pending'
      fields[#fields + 1] = 'offset'; fields[#fields + 1] = off
      redis.call('HSET', rec, unpack(fields))
      redis.call('PEXPIRE', rec, math.max(until_ms, 1000))
      redis.call('ZADD', p .. 'due:' .. user, off, msg)
      redis.call('PEXPIRE', p .. 'due:' .. user, keep)
      local counted = {p .. 'qt:' .. user}
      if cat ~= '' then counted[2] = p .. 'qc:' .. user .. ':' .. cat end
      for _, key in ipairs(counted) do
        redis.call('ZADD', key, ts, msg)
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now - keep)
        redis.call('PEXPIRE', key, keep)
      end
      results[#results + 1] = {'pending', false, off}
    end
  elseif kind == 'D' then
    local ts, n = ARGV[i + 1], tonumber(ARGV[i + 2])
    for k = 1, n do
      local rec = p .. 'r:' .. ARGV[i + 2 + k]
      local st = redis.call('HGET', rec, 'status')
      if st == 'pending' or st == 'delivered' then
        redis.call('HSET', rec, 'status', 'delivered')
        redis.call('HSETNX', rec, 'delivered', ts)
        redis.call('HINCRBY', rec, 'attempts', 1)
      end
    end
    results[#results + 1] = 0
    i = i + 3 + n
  else
    return redis.error_reply('unknown store job ' .. tostring(kind))
  end
end

for channel, last in pairs(touched) do
  local key = p .. 'h:' .. channel
  redis.call('ZREMRANGEBYSCORE', key, '-inf', last - hsize)
  for _ = 1, 100 do  -- drop what outlived history_ttl, oldest first (bounded per call)
    local oldest = redis.call('ZRANGE', key, 0, 0)
    if #oldest == 0 then break end
    local ts = tonumber(string.match(oldest[1], '"ts":(%-?%d+)}$'))
    if ts == nil or ts >= now - httl then break end
    redis.call('ZREMRANGEBYRANK', key, 0, 0)
  end
  redis.call('PEXPIRE', key, httl)
end
return results
"""

# ARGV: prefix, channel, since, limit, bus, token -> {last, first|false, barrier?, texts...}
HISTORY_LUA = r"""
local p, channel = ARGV[1], ARGV[2]
local key = p .. 'h:' .. channel
local texts = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[3], '+inf', 'LIMIT', 0, ARGV[4])
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local last = tonumber(redis.call('GET', p .. 'o:' .. channel) or '0')
local barrier = 0
if #texts > 0 and ARGV[5] ~= '' and ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[5], 'b' .. ARGV[6])
  barrier = 1
end
local out = {last, first[2] or false, barrier}
for _, t in ipairs(texts) do out[#out + 1] = t end
return out
"""

# Expire the user's due personal messages; with want=1 return the rest, oldest first, as
# flat {msg, offset, created, data}... (and publish a barrier when there are some).
# ARGV: prefix, user, now_ms, want, bus, token
PENDING_LUA = r"""
local p, user, now, want = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local due = p .. 'due:' .. user
local out = {}
for _, msg in ipairs(redis.call('ZRANGE', due, 0, -1)) do
  local rec = p .. 'r:' .. msg
  local v = redis.call('HMGET', rec, 'status', 'expires', 'offset', 'created', 'data')
  local st, exp = v[1], tonumber(v[2])
  if st ~= 'pending' and st ~= 'delivered' then
    redis.call('ZREM', due, msg)
  elseif exp and exp < now then
    redis.call('HSET', rec, 'status', 'expired')
    redis.call('ZREM', due, msg)
  elseif want then
    out[#out + 1] = msg; out[#out + 1] = v[3]; out[#out + 1] = v[4]; out[#out + 1] = v[5]
  end
end
if #out > 0 and ARGV[5] ~= '' and ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[5], 'b' .. ARGV[6])
end
return out
"""

# ARGV: prefix, user, msg, now_ms -> status after, or false when not the user's message
ACK_LUA = r"""
local p, user, msg, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rec = p .. 'r:' .. msg
local v = redis.call('HMGET', rec, 'user', 'status', 'expires')
if v[1] ~= user then return false end
local st, exp = v[2], tonumber(v[3])
if st == 'pending' or st == 'delivered' then
  redis.call('ZREM', p .. 'due:' .. user, msg)
  if exp and exp < now then
    redis.call('HSET', rec, 'status', 'expired')
    return 'expired'
  end
  -- an ack proves delivery: fill it in if the queued "delivered" update has not landed yet
  redis.call('HSET', rec, 'status', 'acked', 'acked', now)
  redis.call('HSETNX', rec, 'delivered', now)
  if tonumber(redis.call('HGET', rec, 'attempts') or '0') < 1 then
    redis.call('HSET', rec, 'attempts', 1)
  end
  return 'acked'
end
return st
"""

# ARGV: prefix, user, status ('' = any), limit -> flat records, newest first (11 fields each)
RECORDS_LUA = r"""
local p, user, want, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local index = p .. 'ur:' .. user
local out, found, start = {}, 0, 0
while found < limit do
  local ids = redis.call('ZREVRANGE', index, start, start + 199)
  if #ids == 0 then break end
  start = start + 200
  for _, msg in ipairs(ids) do
    local v = redis.call('HMGET', p .. 'r:' .. msg, 'status', 'reason', 'category', 'offset',
      'created', 'delivered', 'acked', 'expires', 'attempts', 'data')
    if not v[1] then
      redis.call('ZREM', index, msg)
    elseif want == '' or v[1] == want then
      out[#out + 1] = msg
      for k = 1, 10 do out[#out + 1] = v[k] end
      found = found + 1
      if found >= limit then break end
    end
  end
end
return out
"""

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


# -- the store -------------------------------------------------------------------------------


class RedisStore:
    """The Store contract of wsapp.delivery.store.SQLiteStore, kept in Redis."""

    def __init__(self, url: str, history_size: int = 1000, history_ttl: float = 86400.0) -> None:
        self.url = url
        self.backend = backend_for(url)
        self.history_size = history_size
        self.history_ttl_ms = max(1, int(history_ttl * 1000))
        self._prefix = self.backend.prefix
        client = self.backend.client
        self._apply_script = client.register_script(APPLY_LUA)
        self._history_script = client.register_script(HISTORY_LUA)
        self._pending_script = client.register_script(PENDING_LUA)
        self._ack_script = client.register_script(ACK_LUA)
        self._records_script = client.register_script(RECORDS_LUA)
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

    def close(self) -> None:
        """Release the connections (shared with this URL's broker: it closes them too)."""
        self.backend.close()

    # -- writes ----------------------------------------------------------------------------

    def apply(self, jobs: Sequence[tuple]) -> list[Any]:
        """Run write jobs in one atomic script, in order; one result per job."""
        if not self.backend.up:
            return self._degraded(jobs, None)
        args: list[Any] = [self._prefix, int(time.time() * 1000), self.history_size,
                           self.history_ttl_ms,
                           self.backend.bus if self.backend.bus_started else "",
                           RECORD_RETENTION_MS]
        for job in jobs:
            kind = job[0]
            if kind == "publish":
                _, channel, msg, sender, ts, data = job
                head, tail = envelope_parts(channel, msg, data, sender, ts)
                args += ("P", channel, head, tail)
            elif kind == "push":
                _, user, msg, ts, data, category, expires, quotas = job
                head, tail = envelope_parts(f"user:{user}", msg, data, None, ts)
                caps = []
                for name, (limit, window) in quotas.items():
                    if name != "total" and name != category:
                        continue
                    key = f"qt:{user}" if name == "total" else f"qc:{user}:{category}"
                    caps += (key, limit, int(window * 1000),
                             f"quota {name}={limit}/{_window_name(window)} reached for user "
                             f"{user}")
                args += ("U", user, msg, ts, data, category or "",
                         "" if expires is None else expires, head, tail, len(caps) // 4, *caps)
            elif kind == "delivered":
                _, msgs, ts = job
                args += ("D", ts, len(msgs), *msgs)
            else:
                raise ValueError(f"unknown store job {kind!r}")
        try:
            raw = self._apply_script(args=args)
        except PoolBusy as exc:
            raise StoreUnavailable("this write", self.backend.where, f"overloaded ({exc})") \
                from None
        except UNREACHABLE as exc:
            self.backend.mark_down(exc)
            return self._degraded(jobs, exc)
        results: list[Any] = []
        for job, value in zip(jobs, raw, strict=True):
            kind = job[0]
            if kind == "publish":
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

    def _degraded(self, jobs: Sequence[tuple], exc: BaseException | None) -> list[Any]:
        """Redis is down: publishes are not stored (offset None: local only); pushes fail."""
        if any(job[0] == "push" for job in jobs):
            what = "storing a push" if exc is None else \
                "storing a push (the connection broke during the write, so it may be stored)"
            raise StoreUnavailable(what, self.backend.where)
        return [None for _ in jobs]

    def ack(self, user: str, msg: str, ts: int) -> str | None:
        """Mark `msg` acked if it is `user`'s; its status after, None if not found."""
        value = self._call("an ack", self._ack_script, [self._prefix, user, msg, ts])
        return value.decode() if isinstance(value, bytes) else value

    # -- reads -----------------------------------------------------------------------------

    def _call(self, what: str, script: Any, args: list) -> Any:
        if not self.backend.up:
            raise StoreUnavailable(what, self.backend.where)
        try:
            return script(args=args)
        except PoolBusy as exc:
            raise StoreUnavailable(what, self.backend.where, f"overloaded ({exc})") from None
        except UNREACHABLE as exc:
            self.backend.mark_down(exc)
            raise StoreUnavailable(what, self.backend.where) from None

    def history(self, channel: str, since: int, limit: int) -> dict:
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


# -- the broker ------------------------------------------------------------------------------


class RedisBroker:
    """Fan-out across processes over the Redis bus (see the module docstring)."""

    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = backend_for(url)
        self._deliver: Callable[[str, str], None] | None = None

    def start(self, deliver: Callable[[str, str], None]) -> None:
        """Register the local hub's delivery function and subscribe to the bus."""
        self._deliver = deliver
        if deliver not in self.backend.on_message:
            self.backend.on_message.append(deliver)
        self.backend.start_bus()

    def publish(self, channel: str, text: str) -> None:
        """Make every process deliver a message (called once the store numbered it, if at all).

        A Redis store on the same backend already published a numbered message to the bus, in
        the script that numbered it. A message with offset null was not stored (a live feed,
        or Redis is down): it goes on the bus from here, or to this process's subscribers
        only while Redis is down. Messages numbered by another store are published here.
        """
        if self.backend.stores_publish and not _unstored(channel, text):
            return
        if self.backend.up and self.backend.bus_started:
            try:
                self.backend.client.publish(self.backend.bus, "m" + channel + "\n" + text)
                return
            except UNREACHABLE as exc:
                self.backend.mark_down(exc)
        if self._deliver is not None:
            self._deliver(channel, text)

    def close(self) -> None:
        """Stop reading the bus and release the connections."""
        if self._deliver in self.backend.on_message:
            self.backend.on_message.remove(self._deliver)
        self.backend.close()


def _unstored(channel: str, text: str) -> bool:
    """Whether an envelope carries offset null: a message the store did not number."""
    head = '{"op":"message","channel":'
    return text.startswith(head) and text.startswith(',"offset":null,',
                                                     len(head) + len(dumps(channel)))
