"""The one writer: store transactions in batches, then delivery in offset order.

Publishes and pushes from every greenlet queue here. One greenlet takes everything queued,
runs it as one store transaction (one commit for the whole batch), and only then hands the
envelopes to the broker, in the order the store numbered them. So subscribers see offsets
strictly increasing, nothing is delivered that is not stored, and a burst of N publishes
costs one commit rather than N.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from gevent.event import AsyncResult, Event

from wsapp.realtime.engines.base import PENDING, Broker, Job, Replay, Store
from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.messages import message_raw

log = logging.getLogger(__name__)

MAX_BATCH = 500


class Pipeline:
    """Queue of store jobs with a single writer greenlet."""

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self._queue: list[tuple[Job, AsyncResult | None]] = []
        self._wake = Event()
        self._writer: gevent.Greenlet | None = None

    def submit(self, job: Job) -> Any:
        """Run `job` (see engines/base.py) and return its result once delivered."""
        result = AsyncResult()
        self._enqueue(job, result)
        return result.get()

    def submit_all(self, jobs: list[Job]) -> list[Any]:
        """Run many jobs at once (they share the next store transactions); their results, in
        order, once all are done. A job that failed raises its exception here, after every
        other has settled (those stored stay stored)."""
        results = [AsyncResult() for _ in jobs]
        for job, result in zip(jobs, results, strict=True):
            self._enqueue(job, result)
        for result in results:
            result.wait()
        return [result.get() for result in results]

    def submit_nowait(self, job: Job) -> None:
        """Queue a job whose result nobody waits for (status updates)."""
        self._enqueue(job, None)

    def _enqueue(self, job: Job, result: AsyncResult | None) -> None:
        self._queue.append((job, result))
        self._wake.set()
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._process(batch)

    def _process(self, batch: list[tuple[Job, AsyncResult | None]]) -> None:
        jobs = [job for job, _ in batch]
        try:
            results = self.store.apply(jobs)
        except RequestError as exc:  # an expected refusal (store unavailable): one line
            log.warning("store batch of %d job(s) refused: %s", len(jobs), exc.reason)
            for _, result in batch:
                if result is not None:
                    result.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) > 1:
                # One bad job must not fail the others that happened to share its batch (the
                # batch rolled back as a whole): each runs again on its own.
                log.warning("store batch of %d job(s) failed (%s: %s); retrying one by one",
                            len(jobs), type(exc).__name__, exc)
                for item in batch:
                    self._process([item])
                return
            log.error("store job %s failed", jobs[0][0], exc_info=exc)
            result = batch[0][1]
            if result is not None:
                result.set_exception(exc)
            return
        for (job, result), value in zip(batch, results, strict=True):
            try:
                self._deliver(job, value)
            except Exception:  # the message is stored; a delivery bug must not lose others
                log.exception("delivery after store failed for %s", job[0])
            if result is not None:
                result.set(value)

    def _deliver(self, job: Job, value: Any) -> None:
        kind = job[0]
        if isinstance(value, Replay):
            return  # a repeated key: delivered when it was first stored, never again
        if kind == "publish":
            _, channel, msg, sender, ts, data = job[:6]
            self.broker.publish(channel, message_raw(channel, value, msg, data, sender, ts))
        elif kind == "push":
            status, _, offset = value
            if status == PENDING:
                _, user, msg, ts, data = job[:5]
                channel = f"user:{user}"
                self.broker.publish(channel, message_raw(channel, offset, msg, data, None, ts))


def now_ms() -> int:
    """Wall-clock milliseconds: message timestamps are compared across processes."""
    return int(time.time() * 1000)
