"""Running feeds: take a batch, validate it, apply it through the hub, then acknowledge it.

Theory of operation. Each feed has one greenlet (`FeedRunner`) doing rounds:

1. fetch up to `batch` messages (waiting at most WAIT seconds for the first, so a stop is
   noticed within about a second);
2. parse each (feeds/message.py); poison is set aside with its reason;
3. turn the valid ones into store jobs through the hub (its ids, clocks, ttl default and
   quotas) and submit them together to the hub's single writer (pipeline.py), so a batch
   costs one store transaction and is delivered to subscribers in offset order;
4. only once the store has committed: settle — acknowledge the applied messages, move the
   poison ones to the dead letters (and acknowledge them), in one step where the source
   allows.

A crash anywhere before 4 leaves the batch unacknowledged: the source hands it out again (to
this process after a reconnect, or to another), and each message's idempotency key makes the
repeat a no-op in the store (engines/base.py). A message without a `key` gets the source's
lasting id for it (stream entry id, row id, AMQP message-id) as its key, so even those apply
once; only an AMQP message with neither is at-least-once.

Faults. Every call on a source runs under a timeout, so a source that stops answering is
treated as down; the greenlet waits on sockets cooperatively, never blocking the process. A
source that is down is reconnected with exponential backoff and jitter, logged once when it
goes and once when it is back. A store that refuses the batch (unavailable) keeps the batch in
hand, retried with backoff — nothing is acknowledged meanwhile; a batch the store fails on for
any other reason is applied one message at a time, and a message it still fails on is poison.

`WSAPP_TEST_HALT_BEFORE_ACK=1` in the environment stops every round after the store commit
and before the acknowledgement, forever, saying so in the log: the tests SIGKILL the process
at exactly that point to prove a redelivery is applied once. It is read nowhere else.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gevent
from gevent.event import Event

from wsapp.realtime.engines.base import SUPPRESSED, Job, Replay
from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.feeds import open_feed
from wsapp.realtime.feeds.base import Delivery, Feed, FeedUnavailable, describe
from wsapp.realtime.feeds.message import Poison, parse_message
from wsapp.realtime.pipeline import Pipeline
from wsapp.websocket.logsoon import printable


class Target(Protocol):
    """What a feed applies its messages to: the hub (jobs for its single writer)."""

    @property
    def pipeline(self) -> Pipeline: ...

    def publish_job(self, channel: str, data: Any, sender: str | None,
                    key: str | None) -> Job: ...

    def push_job(self, user: str, data: Any, category: str | None, ttl: float | None,
                 key: str | None) -> Job: ...

log = logging.getLogger(__name__)

HALT_ENV = "WSAPP_TEST_HALT_BEFORE_ACK"
WAIT = 1.0  # seconds a fetch waits for a first message
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 10.0
LAG_EVERY = 2.0  # seconds between lag samples (/healthz shows the last one, never asks)
PARSE_SLICE = 32  # messages parsed between two yields to the other greenlets
COUNTS = ("processed", "dead_lettered", "redelivered", "duplicates", "suppressed")


class _Stopped(Exception):
    """The runner was asked to stop while it held a batch: leave it unacknowledged."""


class FeedRunner:
    """One feed's loop (see the module docstring), its state and its counts."""

    def __init__(self, feed: Feed, hub: Target, max_publish_size: int) -> None:
        self.feed = feed
        self.hub = hub
        self.max_publish_size = max_publish_size
        self.state = "starting"  # up | down (source) | stalled (store) | stopped
        self.detail = ""
        self.lag: int | None = None
        self.counts = dict.fromkeys(COUNTS, 0)
        self._connected = False
        self._down_since: float | None = None
        self._lag_at = 0.0
        self._halt = bool(os.environ.get(HALT_ENV))
        self._stop = Event()
        self._greenlet: gevent.Greenlet | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop in its greenlet."""
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self, timeout: float) -> None:
        """Finish the round in hand (up to `timeout` seconds), then disconnect. A round cut
        short is not acknowledged: its messages are redelivered."""
        self._stop.set()
        greenlet = self._greenlet
        if greenlet is not None:
            greenlet.join(timeout)
            if not greenlet.dead:
                greenlet.kill(block=True, timeout=1)
        self._disconnect()
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        """What /healthz shows of this feed (never asks the source: it may be stuck)."""
        feed = self.feed
        return {"feed": feed.name, "source": feed.kind, "url": feed.where,
                "state": self.state, "detail": self.detail, "lag": self.lag,
                "dead_letters": feed.dead_letters, **self.counts}

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                if not self._connected:
                    self._call(self.feed.connect)
                    self._connected = True
                    self._source_up()
                batch = self._call(self.feed.fetch, self.feed.batch, WAIT)
                if batch:
                    self._round(batch)
                if time.monotonic() - self._lag_at >= LAG_EVERY:
                    self.lag = self._call(self.feed.lag)
                    self._lag_at = time.monotonic()
                delay = BACKOFF_FIRST
            except _Stopped:
                break
            except Exception as exc:
                self._source_down(exc)
                if self._stop.wait(delay * random.uniform(0.5, 1.5)):
                    break
                delay = min(delay * 2, BACKOFF_MAX)
        self._disconnect()

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """A call on the source, cut off when it takes longer than the feed's timeout."""
        limit = self.feed.timeout + WAIT
        timer = gevent.Timeout(limit)
        timer.start()
        try:
            return method(*args)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise FeedUnavailable(f"no answer within {limit:.0f}s") from None
        finally:
            timer.close()

    def _round(self, batch: list[Delivery]) -> None:
        """Apply one batch, then settle it (see the module docstring)."""
        dead: list[tuple[Delivery, str]] = []
        items: list[tuple[Delivery, Job]] = []
        for i, delivery in enumerate(batch):
            if delivery.redelivered:
                self.counts["redelivered"] += 1
            try:
                if delivery.problem:
                    raise Poison(delivery.problem)
                items.append((delivery, self._job(delivery)))
            except Poison as exc:
                dead.append((delivery, exc.reason))
            if i % PARSE_SLICE == PARSE_SLICE - 1:
                gevent.sleep(0)  # parsing is CPU work: let the others run between slices
        applied = self._apply(items, dead) if items else []
        if self._halt:
            log.warning("feed %s: %d message(s) stored, halting before the acknowledgement "
                        "(%s is set)", self.feed.name, len(applied), HALT_ENV)
            self._stop.wait()
            raise _Stopped
        self._call(self.feed.settle, [d for d, _, _ in applied], dead)
        for _, job, value in applied:
            if isinstance(value, Replay):
                self.counts["duplicates"] += 1
            elif job[0] == "push" and value[0] == SUPPRESSED:
                self.counts["suppressed"] += 1
        self.counts["processed"] += len(applied)
        self.counts["dead_lettered"] += len(dead)
        for delivery, reason in dead:
            # the id and the reason carry what the source's producer wrote: escaped
            log.warning("feed %s: message %s dead-lettered to %s: %s", self.feed.name,
                        printable(delivery.ident or "?"), self.feed.dead_letters,
                        printable(reason))

    def _job(self, delivery: Delivery) -> Job:
        """The store job of one delivery; Poison when it is not a valid message."""
        msg = parse_message(delivery.body, self.max_publish_size)
        key = msg.key or (f"{self.feed.name}#{delivery.ident}" if delivery.ident else None)
        if msg.op == "publish":
            return self.hub.publish_job(msg.target, msg.data, None, key)
        return self.hub.push_job(msg.target, msg.data, msg.category, msg.ttl, key)

    def _apply(self, items: list[tuple[Delivery, Job]],
               dead: list[tuple[Delivery, str]]) -> list[tuple[Delivery, Job, Any]]:
        """Store the batch; hold it while the store is unavailable (retrying with backoff).
        Messages the store fails on for another reason join `dead`."""
        delay = BACKOFF_FIRST
        while True:
            try:
                try:
                    results = self.hub.pipeline.submit_all([job for _, job in items])
                    applied = [(d, job, value) for (d, job), value in
                               zip(items, results, strict=True)]
                except RequestError:
                    raise
                except Exception:
                    applied = self._one_by_one(items, dead)
            except RequestError as exc:
                self._store_stalled(exc, len(items))
                if self._stop.wait(delay * random.uniform(0.5, 1.5)):
                    raise _Stopped from None  # unacknowledged: the source redelivers
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if self.state == "stalled":
                log.warning("feed %s: the store takes writes again: resuming", self.feed.name)
                self.state, self.detail = "up", ""
            return applied

    def _one_by_one(self, items: list[tuple[Delivery, Job]],
                    dead: list[tuple[Delivery, str]]) -> list[tuple[Delivery, Job, Any]]:
        """A batch the store failed on: each message alone, the failing ones dead-lettered."""
        applied = []
        for delivery, job in items:
            try:
                applied.append((delivery, job, self.hub.pipeline.submit(job)))
            except RequestError:
                raise
            except Exception as exc:
                dead.append((delivery, f"the store failed on it: {type(exc).__name__}: "
                                       f"{str(exc)[:200]}"))
        return applied

    # -- state -----------------------------------------------------------------------------

    def _source_up(self) -> None:
        if self._down_since is not None:
            log.warning("feed %s (%s) reachable again after %.1fs: resuming", self.feed.name,
                        self.feed.where, time.monotonic() - self._down_since)
        else:
            log.info("feed %s (%s) connected; dead letters go to %s", self.feed.name,
                     self.feed.where, self.feed.dead_letters)
        self._down_since = None
        self.state, self.detail = "up", ""

    def _source_down(self, exc: Exception) -> None:
        """Say it once per outage; drop the connections (unsettled messages go back)."""
        self.detail = describe(exc)
        if self._down_since is None:
            self._down_since = time.monotonic()
            if isinstance(exc, FeedUnavailable):
                log.warning("feed %s (%s) unreachable (%s): reconnecting with backoff; its "
                            "messages wait at the source", self.feed.name, self.feed.where,
                            self.detail)
            else:  # not a connection problem: a bug or a refusal worth a traceback, once
                log.exception("feed %s (%s) failed: reconnecting with backoff", self.feed.name,
                              self.feed.where)
        self.state = "down"
        self.lag = None
        self._disconnect()

    def _store_stalled(self, exc: RequestError, held: int) -> None:
        if self.state != "stalled":
            log.warning("feed %s: the store refused a batch (%s): holding %d message(s) and "
                        "retrying; nothing is acknowledged meanwhile", self.feed.name,
                        exc.reason, held)
        self.state, self.detail = "stalled", exc.reason

    def _disconnect(self) -> None:
        self._connected = False
        try:
            self.feed.close()  # idempotent; also after a connect that failed half-way
        except Exception:  # closing a dead connection may fail; nothing to do about it
            pass


class Feeds:
    """The feeds of one app's hub, running while the server serves (start_feeds)."""

    def __init__(self, runners: Sequence[FeedRunner]) -> None:
        self.runners = list(runners)

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every feed, each finishing its round within `timeout` seconds (together)."""
        stoppers = [gevent.spawn(runner.stop, timeout) for runner in self.runners]
        gevent.joinall(stoppers, timeout=timeout + 2)

    def health(self) -> list[dict[str, Any]]:
        return [runner.health() for runner in self.runners]


def start_feeds(hub: Target, urls: Sequence[str], max_publish_size: int) -> Feeds | None:
    """Start a feed into `hub` for each URL; None when there are none."""
    if not urls:
        return None
    feeds = Feeds([FeedRunner(open_feed(url), hub, max_publish_size) for url in urls])
    feeds.start()
    return feeds
