"""What the picture draws (`plot.series`), from reports built by the real stats and report
code: the msgs/s line reads as its title says, and every line the legend lists is drawn."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from wsapp.loadtest import plot, report
from wsapp.loadtest.options import Config
from wsapp.loadtest.runner import Outcome
from wsapp.loadtest.stats import WorkerStats, merge

MEASURE = (1.0, 11.0)  # seconds since the run started


def broadcast_report(rate: float, subscribers: int = 500,
                     measure: tuple[float, float] = MEASURE) -> dict[str, Any]:
    """A broadcast at `rate` publishes/s over `measure`: each publish reaches every subscriber
    5 ms later (one timeline slot), as on a quiet machine."""
    cfg = Config(scenario="broadcast", url="ws://127.0.0.1:1/ws", connections=subscribers,
                 duration=measure[1] - measure[0], rate=rate)
    st = WorkerStats(0.0, cfg.slot())
    st.measure_start, st.measure_end = measure
    for k in range(round((measure[1] - measure[0]) * rate)):
        due = measure[0] + k / rate
        st.sent += 1
        st.second(due).sent += 1
        for _ in range(subscribers):
            st.record_latency(5.0, due + 0.005)
    t = 0.0
    while t < measure[1] + 0.5:
        st.open_now = subscribers
        st.second(t).open_now = subscribers
        t += cfg.slot()
    return report.build(cfg, merge([st.to_dict()]), Outcome(results=[], started=0.0),
                        max_error_rate=0.01)


def inside(line: plot.Line, lo: float, hi: float) -> list[float]:
    return [y for x, y in zip(line.x, line.y, strict=True) if lo <= x <= hi]


def test_broadcast_rate_line_is_the_title_figure_not_a_saw_tooth() -> None:
    rep = broadcast_report(rate=1.0)
    assert rep["timeline_slot_s"] == 0.2 and rep["msgs_per_s"] == 500
    # Per 0.2 s slot the deliveries come in bursts: 2,500/s once a second, 0 in between.
    raw = [r["received_per_s"] for r in rep["timeline"] if MEASURE[0] <= r["t"] < MEASURE[1]]
    assert max(raw) == 2500 and min(raw) == 0
    s = plot.series(rep)
    assert s.window_s == 1.0  # the time between two publishes
    # Every window wholly inside the measured time holds one publish: 500 msgs/s flat.
    line = inside(s.received_per_s, MEASURE[0] + 0.5, MEASURE[1] - 0.5)
    assert len(line) > 40 and line == pytest.approx([500] * len(line))


def test_slower_broadcast_widens_the_window() -> None:
    rep = broadcast_report(rate=0.5)
    s = plot.series(rep)
    assert s.window_s == 2.0
    line = inside(s.received_per_s, MEASURE[0] + 1.0, MEASURE[1] - 1.0)
    assert line and line == pytest.approx([250] * len(line)) and rep["msgs_per_s"] == 250


def test_window_holds_whole_send_periods() -> None:
    # A 20 s run has 0.4 s slots: 1.2 s would hold one publish or two by turns (a saw-tooth
    # again); 2 s holds two wherever it sits.
    rep = broadcast_report(rate=1.0, measure=(1.0, 21.0))
    assert rep["timeline_slot_s"] == 0.4
    s = plot.series(rep)
    assert s.window_s == 2.0
    line = inside(s.received_per_s, 2.0, 20.0)
    assert line and line == pytest.approx([500] * len(line))


def test_steady_flow_keeps_the_timeline_resolution() -> None:
    rep = broadcast_report(rate=50.0, subscribers=10)  # a publish every 20 ms: steady
    s = plot.series(rep)
    assert s.window_s == s.slot_s == 0.2
    line = inside(s.received_per_s, MEASURE[0] + 0.2, MEASURE[1] - 0.2)
    assert statistics.mean(line) == pytest.approx(rep["msgs_per_s"], rel=0.02)


def test_latency_lines_the_legend_lists_are_all_drawn() -> None:
    # Few samples per slot: p99 equals max in every slot, as in a short idle run.
    s = plot.series(broadcast_report(rate=1.0, subscribers=20))
    assert s.latency["p99"].y == s.latency["max"].y and s.latency["p99"].x
    assert set(s.latency) == set(plot.LATENCY_STYLES)
    # Where they coincide, max is drawn last, dotted, so p99's line and circles show through.
    p99, top = plot.LATENCY_STYLES["p99"], plot.LATENCY_STYLES["max"]
    assert top["zorder"] > p99["zorder"] and top["linestyle"] != "-"
    assert p99["marker"] != top["marker"]


def test_plot_file_from_a_report(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "b.png"
    plot.write_plot(broadcast_report(rate=1.0, subscribers=50), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
