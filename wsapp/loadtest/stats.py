"""Mergeable measurements: a log-bucket latency histogram, per-second timelines, CPU samples.

Every worker process keeps its own `WorkerStats`; the coordinator merges them with `merge`.
Nothing here stores one entry per message, so a worker's memory stays flat however long the run.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Bucket width: each bucket spans 1% of its value, so a percentile is off by at most ~0.5%.
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
_MIN_US = 1.0  # values below 1 microsecond share bucket 0


def _bucket(ms: float) -> int:
    us = ms * 1000.0
    if us <= _MIN_US:
        return 0
    return int(math.log(us) / _LOG_GROWTH) + 1


def _bucket_mid_ms(b: int) -> float:
    if b <= 0:
        return _MIN_US / 1000.0
    # Geometric middle of [growth^(b-1), growth^b) microseconds.
    return math.exp((b - 0.5) * _LOG_GROWTH) / 1000.0


class LogHistogram:
    """Latency histogram in milliseconds with ~1% relative buckets; cheap to add and merge."""

    __slots__ = ("counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, ms: float, bucket: int | None = None) -> None:
        """Record one sample (negative values, from clock skew, count as zero).

        `bucket` may be passed when the caller already computed it for another histogram.
        """
        if ms < 0:
            ms = 0.0
        self.counts[_bucket(ms) if bucket is None else bucket] += 1
        self.count += 1
        self.total += ms
        if ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms

    def merge(self, other: LogHistogram) -> None:
        """Add another histogram's samples to this one."""
        self.counts.update(other.counts)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0-100) in ms, or None without samples; exact at 0 and 100."""
        if not self.count:
            return None
        if q <= 0:
            return self.min
        if q >= 100:
            return self.max
        rank = math.ceil(self.count * q / 100.0)
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                # Clamp to the observed range so p99 never reads above max.
                return min(max(_bucket_mid_ms(b), self.min), self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        """The report's latency block: count, min, mean, p50, p90, p99, p99.9, max (ms)."""
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "count": self.count,
            "min": r(self.min if self.count else None),
            "mean": r(self.total / self.count if self.count else None),
            "p50": r(self.percentile(50)),
            "p90": r(self.percentile(90)),
            "p99": r(self.percentile(99)),
            "p999": r(self.percentile(99.9)),
            "max": r(self.max if self.count else None),
        }

    def to_dict(self) -> dict[str, Any]:
        """A picklable/JSON form (bucket index -> count)."""
        return {"counts": dict(self.counts), "count": self.count, "total": self.total,
                "min": self.min if self.count else None, "max": self.max}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogHistogram:
        """Inverse of `to_dict`."""
        h = cls()
        h.counts.update({int(k): v for k, v in d["counts"].items()})
        h.count = d["count"]
        h.total = d["total"]
        h.min = math.inf if d["min"] is None else d["min"]
        h.max = d["max"]
        return h

    def buckets_ms(self) -> list[tuple[float, int]]:
        """(bucket middle in ms, count) pairs in increasing order, for plotting."""
        return [(_bucket_mid_ms(b), self.counts[b]) for b in sorted(self.counts)]


@dataclass
class Second:
    """What happened in one timeline slot (a second, or less for short runs)."""

    latency: LogHistogram = field(default_factory=LogHistogram)
    received: int = 0
    sent: int = 0
    errors: int = 0
    opened: int = 0
    open_now: int | None = None  # open connections at the last sample here; None = no sample

    def merge(self, other: Second) -> None:
        """Add another worker's second (open counts add up across processes)."""
        self.latency.merge(other.latency)
        self.received += other.received
        self.sent += other.sent
        self.errors += other.errors
        self.opened += other.opened
        if other.open_now is not None:
            self.open_now = (self.open_now or 0) + other.open_now


def runqueue_wait_s(pid: int | str = "self") -> float | None:
    """Seconds a process's main thread has spent runnable but waiting for a CPU (Linux).

    High values mean other work on the machine, not this process, set the pace.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """Process CPU time as a percentage of one core, between `mark` calls; also how long the
    process waited for a CPU (`wait_pct`), which tells a busy client from a crowded machine."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = self._cpu()
        self._w0 = runqueue_wait_s()
        self.wait_pct: float | None = None

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def mark(self) -> float:
        """CPU % of one core used since the last mark (or creation)."""
        t, c, w = time.monotonic(), self._cpu(), runqueue_wait_s()
        span = max(t - self._t0, 1e-6)
        pct = 100.0 * (c - self._c0) / span
        self.wait_pct = None if w is None or self._w0 is None else 100.0 * (w - self._w0) / span
        self._t0, self._c0, self._w0 = t, c, w
        return pct


def max_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class WorkerStats:
    """Everything one worker measures; `to_dict`/`from_dict` carry it over the pipe."""

    def __init__(self, origin: float, slot: float = 1.0) -> None:
        # `origin` is the wall-clock start of the whole run, shared by all workers, so their
        # timelines (in `slot`-second steps) line up when merged.
        self.origin = origin
        self.slot = slot
        # The run's latency histogram is the sum of the per-slot ones (see `to_dict`): one
        # histogram fewer to update per message on the hot path.
        self.window = LogHistogram()  # latency since the last progress snapshot
        self.connect = LogHistogram()
        self.first = LogHistogram()  # broadcast: per message, latency to the first receiver
        self.last = LogHistogram()  # broadcast: per message, latency to the last receiver
        self.seconds: dict[int, Second] = {}
        self.errors: Counter[str] = Counter()
        self.error_samples: dict[str, str] = {}
        self.attempted = 0
        self.opened = 0
        self.open_now = 0
        self.peak_open = 0
        self.sent = 0
        self.received = 0
        self.expected = 0
        self.subscribed = 0  # rooms scenarios: connections whose subscribe was accepted
        self.late = 0  # messages that arrived after the drain ended (they were counted lost)
        self.books_closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self.published: dict[str, int] = {}  # channel -> publishes acknowledged or in flight
        # broadcast: seq -> [first receive time, last receive time, receivers]
        self.deliveries: dict[int, list[float]] = {}
        self.cpu_pct: dict[str, float] = {}  # phase -> CPU % of one core
        self.cpu_wait_pct: dict[str, float] = {}  # phase -> % of the time waiting for a CPU
        self.rss_mb: float = 0.0
        self.measure_start = 0.0
        self.measure_end = 0.0
        self.setup_s = 0.0  # how long this worker took to open (and subscribe) its connections

    def second(self, now: float | None = None) -> Second:
        """The timeline slot for `now` (default: the current time)."""
        idx = int(((now if now is not None else time.time()) - self.origin) / self.slot)
        s = self.seconds.get(idx)
        if s is None:
            s = self.seconds[idx] = Second()
        return s

    def record_latency(self, ms: float, now: float) -> None:
        """One message arrived `ms` after it was due to be sent."""
        if self.books_closed:
            self.late += 1  # already counted as lost when the drain ended
            return
        self.received += 1
        b = _bucket(max(ms, 0.0))
        self.window.add(ms, b)
        s = self.second(now)
        s.received += 1
        s.latency.add(ms, b)

    def record_sent(self, nbytes: int) -> None:
        """One message went out."""
        self.sent += 1
        self.bytes_sent += nbytes
        self.second().sent += 1

    def record_open(self, connect_ms: float) -> None:
        """A connection finished its handshake after `connect_ms`."""
        self.opened += 1
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        self.connect.add(connect_ms)
        self.second().opened += 1

    def record_closed(self) -> None:
        """A connection that was open has gone."""
        self.open_now -= 1

    def record_error(self, kind: str, detail: str = "", count: int = 1) -> None:
        """Count an error by kind, keeping the first detail message of each kind."""
        if count <= 0:
            return
        self.errors[kind] += count
        if detail and kind not in self.error_samples:
            self.error_samples[kind] = detail[:300]
        self.second().errors += count

    def record_delivery(self, seq: int, sent_at: float, now: float) -> None:
        """A broadcast message `seq` reached one subscriber (first/last per message)."""
        if self.books_closed:
            return
        d = self.deliveries.get(seq)
        if d is None:
            self.deliveries[seq] = [sent_at, now, now, 1.0]
        else:
            if now < d[1]:
                d[1] = now
            if now > d[2]:
                d[2] = now
            d[3] += 1

    def sample_open(self) -> None:
        """Note how many connections are open now, for the timeline."""
        self.second().open_now = self.open_now

    def total_latency(self) -> LogHistogram:
        """Every latency sample of the run (the per-slot histograms added up)."""
        h = LogHistogram()
        for s in self.seconds.values():
            h.merge(s.latency)
        return h

    def to_dict(self) -> dict[str, Any]:
        """A picklable form for the pipe to the coordinator."""
        return {
            "origin": self.origin,
            "slot": self.slot,
            "setup_s": self.setup_s,
            "latency": self.total_latency().to_dict(),
            "connect": self.connect.to_dict(),
            "seconds": {
                k: {"latency": s.latency.to_dict(), "received": s.received, "sent": s.sent,
                    "errors": s.errors, "opened": s.opened, "open_now": s.open_now}
                for k, s in self.seconds.items()
            },
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "counters": {k: getattr(self, k) for k in _COUNTERS},
            "published": self.published,
            "deliveries": self.deliveries,
            "cpu_pct": self.cpu_pct,
            "cpu_wait_pct": self.cpu_wait_pct,
            "rss_mb": self.rss_mb,
            "measure_start": self.measure_start,
            "measure_end": self.measure_end,
        }


_COUNTERS = ("attempted", "opened", "open_now", "peak_open", "sent", "received", "expected",
             "subscribed", "late", "bytes_sent", "bytes_received")


@dataclass
class Merged:
    """All workers' stats combined: what the report and the summary are built from."""

    latency: LogHistogram = field(default_factory=LogHistogram)
    connect: LogHistogram = field(default_factory=LogHistogram)
    first: LogHistogram = field(default_factory=LogHistogram)
    last: LogHistogram = field(default_factory=LogHistogram)
    seconds: dict[int, Second] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    published: Counter[str] = field(default_factory=Counter)
    deliveries: dict[int, list[float]] = field(default_factory=dict)
    cpu_pct: dict[str, list[float]] = field(default_factory=dict)
    cpu_wait_pct: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    measure_start: float = 0.0
    measure_end: float = 0.0
    slot: float = 1.0
    setup_s: float = 0.0


def _sum_open_counts(m: Merged, results: list[dict[str, Any]]) -> None:
    """Open connections per slot, summed over processes.

    A process samples its open count twice a second, but under load it can miss a slot: its
    connections were still open, so its last sample is carried forward (not counted as 0).
    """
    if not m.seconds:
        return
    lo, hi = min(m.seconds), max(m.seconds)
    totals = dict.fromkeys(range(lo, hi + 1), 0)
    for r in results:
        samples = {int(k): sd["open_now"] for k, sd in r["seconds"].items()
                   if sd["open_now"] is not None}
        last = 0
        for idx in range(lo, hi + 1):
            last = samples.get(idx, last)
            totals[idx] += last
    for idx, total in totals.items():
        m.seconds.setdefault(idx, Second()).open_now = total


def merge(results: list[dict[str, Any]]) -> Merged:
    """Combine the `to_dict` results of every worker into one `Merged`."""
    m = Merged()
    for r in results:
        m.slot = r["slot"]
        m.setup_s = max(m.setup_s, r["setup_s"])
        m.latency.merge(LogHistogram.from_dict(r["latency"]))
        m.connect.merge(LogHistogram.from_dict(r["connect"]))
        for k, sd in r["seconds"].items():
            s = Second(LogHistogram.from_dict(sd["latency"]), sd["received"], sd["sent"],
                       sd["errors"], sd["opened"], sd["open_now"])
            m.seconds.setdefault(int(k), Second()).merge(s)
        m.errors.update(r["errors"])
        for k, v in r["error_samples"].items():
            m.error_samples.setdefault(k, v)
        m.counters.update(r["counters"])
        m.published.update(r["published"])
        for seq, (sent_at, first, last, n) in r["deliveries"].items():
            d = m.deliveries.get(seq)
            if d is None:
                m.deliveries[seq] = [sent_at, first, last, n]
            else:
                d[1] = min(d[1], first)
                d[2] = max(d[2], last)
                d[3] += n
        for phase, pct in r["cpu_pct"].items():
            m.cpu_pct.setdefault(phase, []).append(pct)
        for phase, pct in r["cpu_wait_pct"].items():
            m.cpu_wait_pct.setdefault(phase, []).append(pct)
        m.rss_mb.append(r["rss_mb"])
        if r["measure_start"]:
            m.measure_start = min(m.measure_start or math.inf, r["measure_start"])
        m.measure_end = max(m.measure_end, r["measure_end"])
    _sum_open_counts(m, results)
    for sent_at, first, last, _n in m.deliveries.values():
        m.first.add((first - sent_at) * 1000.0)
        m.last.add((last - sent_at) * 1000.0)
    return m
