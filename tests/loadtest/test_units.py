"""The pieces that need no server: histogram accuracy and merging, option parsing, pacing."""

from __future__ import annotations

import math
import random
import time

import pytest

from wsapp.loadtest.limits import check_ports
from wsapp.loadtest.options import Config, parse_source_ips, resolve_url
from wsapp.loadtest.scenarios import pace
from wsapp.loadtest.stats import LogHistogram, WorkerStats, merge


def exact(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * q / 100) - 1)]


def test_histogram_percentiles_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 1.5) for _ in range(20000)]
    h = LogHistogram()
    for v in values:
        h.add(v)
    for q in (50, 90, 99, 99.9):
        assert h.percentile(q) == pytest.approx(exact(values, q), rel=0.011)
    assert h.percentile(100) == max(values) and h.percentile(0) == min(values)
    assert h.summary()["count"] == 20000


def test_histogram_merge_equals_single() -> None:
    rng = random.Random(3)
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    for i in range(5000):
        v = rng.expovariate(0.1)
        (a if i % 2 else b).add(v)
        both.add(v)
    a.merge(LogHistogram.from_dict(b.to_dict()))
    assert a.summary() == both.summary()


def test_merge_broadcast_first_and_last() -> None:
    w1, w2 = WorkerStats(0.0), WorkerStats(0.0)
    w1.record_delivery(0, 100.0, 100.010)
    w1.record_delivery(0, 100.0, 100.030)
    w2.record_delivery(0, 100.0, 100.005)
    w2.record_delivery(0, 100.0, 100.050)
    m = merge([w1.to_dict(), w2.to_dict()])
    assert m.deliveries[0][3] == 4
    assert m.first.max == pytest.approx(5.0, abs=0.01)
    assert m.last.max == pytest.approx(50.0, abs=0.01)


def test_source_ips() -> None:
    assert parse_source_ips("127.0.0.1-127.0.0.3") == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert parse_source_ips("127.0.0.1-2,127.0.0.9") == ["127.0.0.1", "127.0.0.2", "127.0.0.9"]
    with pytest.raises(ValueError):
        parse_source_ips("127.0.0.5-127.0.0.1")
    with pytest.raises(ValueError):
        parse_source_ips("not-an-ip")


def test_resolve_url_adds_scenario_path() -> None:
    assert resolve_url("ws://127.0.0.1:5000", "echo") == "ws://127.0.0.1:5000/ws/echo"
    assert resolve_url("127.0.0.1:5000/", "chat") == "ws://127.0.0.1:5000/ws"
    assert resolve_url("http://h:1/custom?x=1", "idle") == "ws://h:1/custom?x=1"


def test_ports_warning_suggests_source_ips() -> None:
    assert check_ports(10000, 1) is None
    msg = check_ports(60000, 1)
    assert msg and "--source-ips" in msg
    assert check_ports(60000, 4) is None


def test_pace_is_open_loop_and_bounded() -> None:
    due: list[float] = []
    start = time.time()
    n = pace(200.0, start, start + 0.5, lambda k, t: due.append(t))
    assert n == len(due) == 100
    # Due times follow the schedule, whatever the actual send times were.
    assert due[1] - due[0] == pytest.approx(0.005, abs=1e-6)


def test_config_share_interleaves() -> None:
    cfg = Config(scenario="idle", url="ws://x/", connections=10, processes=3)
    assert [cfg.per_process(i) for i in range(3)] == [4, 3, 3]


def test_open_counts_carry_forward_across_missed_slots() -> None:
    w1, w2 = WorkerStats(0.0), WorkerStats(0.0)
    for now in (0.5, 1.5, 2.5):
        w1.open_now = 100
        w1.second(now).open_now = 100
    w2.second(0.5).open_now = 50  # then no sample in slots 1 and 2: still 50 open
    w2.second(1.5).received += 1  # an event without a sample
    m = merge([w1.to_dict(), w2.to_dict()])
    assert [m.seconds[i].open_now for i in range(3)] == [150, 150, 150]


def test_arrivals_after_the_drain_are_late_not_received() -> None:
    w = WorkerStats(0.0)
    w.record_latency(5.0, 1.0)
    w.books_closed = True
    w.record_latency(9000.0, 2.0)
    w.record_delivery(1, 0.0, 2.0)
    assert (w.received, w.late, w.total_latency().count, w.deliveries) == (1, 1, 1, {})
