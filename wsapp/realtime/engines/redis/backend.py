"""One Redis URL in one process: the command pool, the bus, up/down state, the Lua scripts.

Theory of operation. Every engine that names the same Redis URL in a process (store, broker,
presence) shares one `RedisBackend`: a command connection pool and ONE pub/sub connection
subscribed to a single bus channel (`<prefix>bus`), read by one greenlet. Everything that must
reach every process travels on that bus, in the order Redis executed it:

* a channel message or personal push is appended to the channel's history and PUBLISHed to
  the bus by the same Lua script that numbers it (store.py), so Redis orders offsets and bus
  messages identically: every process hands a channel's messages to its subscribers in offset
  order, however many processes publish at once;
* a process delivers its own publishes from the bus too, never directly: each subscriber
  sees each message exactly once, and in the same order as everybody else;
* a read that recovery depends on (history, pending personal messages) publishes a barrier
  token in the same script, and returns only when the bus reader has passed it, so every
  message stored before the read has already reached the hub (and was held by its replay
  logic) before the replay ends: no duplicate at the recovery seam — also when nothing
  after `since` was left to replay, as what the client already has may still be on its way;
* presence events (presence.py) and server-side operations (broker.py) share the bus, so
  they are ordered with messages.

Bus payloads start with a letter: `m<n>:<channel><envelope>` a message (n: the channel's
length in UTF-8 bytes, so no byte of a name can end it early), `b<token>` a barrier,
any other letter an event for the handler registered under it (`on_event`).

Outage. When a Redis call fails the backend goes *down* (logged once), closes its pool and
retries with exponential backoff and jitter until Redis answers and the bus is subscribed
again (logged once), then tells every `on_up` listener. What each engine does meanwhile is in
its own module; nothing ever waits on a Redis that is down. See docs/deploying.md.

The Lua lives in scripts/*.lua, shipped with the package and loaded by name (`script()`).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import gevent
import redis
from gevent.event import AsyncResult, Event
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from wsapp.realtime.engines.base import Health
from wsapp.realtime.urls import redact, take_options

log = logging.getLogger(__name__)

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


def message_payload(channel: str, text: str) -> str:
    """The bus payload of a message (store_apply.lua builds the same): the channel's length
    first, so the framing holds whatever a name contains (a newline split it before)."""
    return f"m{len(channel.encode('utf-8'))}:{channel}{text}"


def split_message(payload: bytes) -> tuple[str, str]:
    """(channel, text) of a message payload built by message_payload; ValueError if it is
    not one."""
    length, colon, rest = payload[1:].partition(b":")
    if not colon or not length.isdigit() or int(length) > len(rest):
        raise ValueError("not a message payload")
    size = int(length)
    return rest[:size].decode("utf-8"), rest[size:].decode("utf-8")


def split_url(url: str) -> tuple[str, str]:
    """(redis-py URL, key prefix): `?prefix=name` picks the key prefix (default `wsapp`)."""
    clean, options = take_options(url, ("prefix",))
    return clean, (options.get("prefix") or "wsapp") + ":"


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
        # Named per process, so CLIENT LIST tells whose connection is whose.
        pool = _Pool.from_url(
            clean, max_connections=POOL_SIZE, timeout=POOL_WAIT,
            socket_timeout=COMMAND_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True, retry=no_retry, client_name=f"wsapp-{os.getpid()}")
        self.client = redis.Redis(connection_pool=pool)
        # The bus connection blocks in reads while idle: no read timeout; the probe and TCP
        # keepalive find a dead one.
        self._bus_client = redis.Redis.from_url(
            clean, socket_timeout=None, socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True, retry=no_retry, client_name=f"wsapp-bus-{os.getpid()}")
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
        """Route one bus payload: m<n>:<channel><text>, b<token>, or a handler's letter."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        kind = payload[:1].decode("ascii", "replace")
        if kind == "m":
            try:
                channel, text = split_message(payload)
            except ValueError:
                log.error("bus message not framed m<n>:<channel><text>: %r", payload[:80])
                return
            for deliver in self.on_message:
                try:
                    deliver(channel, text)
                except Exception:
                    log.exception("delivery of a bus message on %s failed", channel)
        elif kind == "b":
            waiter = self._barriers.get(payload[1:].decode("utf-8"))
            if waiter is not None:
                waiter.set(True)
        else:
            handler = self.on_event.get(kind)
            if handler is not None:
                try:
                    handler(payload[1:].decode("utf-8"))
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
        """Wait until the bus reader passed `token` (only when the script published it)."""
        try:
            if needed:
                try:
                    waiter.get(timeout=BARRIER_WAIT)
                except gevent.Timeout:
                    log.warning("bus barrier not seen in %.1fs; a replayed message may be "
                                "delivered twice", BARRIER_WAIT)
        finally:
            self._barriers.pop(token, None)

    def health(self) -> Health:
        """Up or down as this process last found Redis (an engine's /healthz entry)."""
        if self.up:
            return {"engine": "redis", "state": "up", "detail": self.where}
        since = "" if self.down_since is None else \
            f" for {time.monotonic() - self.down_since:.0f}s"
        return {"engine": "redis", "state": "down", "detail": f"{self.where} unreachable{since}"}

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


def script(client: redis.Redis, name: str, *libraries: str) -> Script:
    """The Lua script scripts/<name>.lua (after the named library files), registered on
    `client`: redis-py runs it by SHA and loads it again after a Redis restart."""
    folder = resources.files(__package__).joinpath("scripts")
    source = "".join(folder.joinpath(f"{part}.lua").read_text("utf-8")
                     for part in (*libraries, name))
    return client.register_script(source)
