"""The run's picture (`--plot`): load over time, latency over time, latency histogram.

`series` turns a JSON report into exactly what is drawn, so tests check the data rather than
pixels. The msgs/s line is a rate over a window at least as long as the gap between two sends:
a broadcast at 1 publish/s delivers each message to every subscriber within one 0.2 s slot,
so per-slot rates swing between 0 and five times the mean (the title's figure); over 1 s they
read as the title does. A steady flow (echo, chat) keeps one slot, so edges stay sharp.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

ALIGN_WITHIN = 5  # a msgs/s window may grow up to 5x to hold a whole number of sends


@dataclass
class Line:
    """One drawn line: x (seconds since the run started) and y."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


@dataclass
class Series:
    """What the picture draws."""

    slot_s: float  # timeline resolution: latencies are per slot
    window_s: float  # the msgs/s and errors/s lines are rates over this window
    open: Line
    received_per_s: Line
    errors_per_s: Line | None  # None when there were no errors
    latency: dict[str, Line]  # "p50", "p99", "max" per slot (slots without samples left out)
    histogram: list[tuple[float, int]]  # (bucket ms, count)


def rate_window_slots(report: dict[str, Any], slot: float, slots: int) -> int:
    """How many slots the msgs/s window spans. One for a steady flow. For bursts (a broadcast
    at 1 publish/s delivers each publish at once), at least the time between two sends, and
    if it can be, a whole number of those (1 s of 0.2 s slots; 2 s of 0.4 s slots): then every
    window holds as many sends wherever it sits, and the line stays flat. Never more slots
    than the timeline has."""
    sent_per_s = report.get("sent_per_s") or 0.0
    if sent_per_s <= 0 or sent_per_s * slot >= 1.0:
        return 1
    shortest = math.ceil(1.0 / (sent_per_s * slot) - 1e-9)
    for k in range(shortest, ALIGN_WITHIN * shortest + 1):
        sends = k * slot * sent_per_s
        if abs(sends - round(sends)) <= 0.02 * sends:
            return max(1, min(k, slots))
    return max(1, min(shortest, slots))


def _windowed(rows: list[dict[str, Any]], key: str, slot: float, k: int) -> Line:
    """Rate of `key` (a per-slot rate) over each run of k whole slots of the timeline,
    plotted at the run's middle."""
    counts = {round(r["t"] / slot): r[key] * slot for r in rows}
    lo, hi = min(counts), max(counts)
    line = Line()
    for j in range(lo, hi - k + 2):
        total = sum(counts.get(i, 0.0) for i in range(j, j + k))
        line.x.append(round((j + k / 2) * slot, 6))
        line.y.append(total / (k * slot))
    return line


def series(report: dict[str, Any]) -> Series:
    """The data behind each panel of the picture."""
    rows = report["timeline"]
    slot = report.get("timeline_slot_s") or (rows[1]["t"] - rows[0]["t"] if len(rows) > 1
                                             else 1.0)
    k = rate_window_slots(report, slot, len(rows))
    mid = [r["t"] + slot / 2 for r in rows]  # per-slot values sit at the slot's middle
    opened = Line(mid, [math.nan if r["open"] is None else r["open"] for r in rows])
    latency = {}
    for key in ("p50", "p99", "max"):
        pts = [(x, r[key]) for x, r in zip(mid, rows, strict=True) if r[key] is not None]
        latency[key] = Line([p[0] for p in pts], [p[1] for p in pts])
    return Series(
        slot_s=slot, window_s=round(k * slot, 6), open=opened,
        received_per_s=_windowed(rows, "received_per_s", slot, k) if rows else Line(),
        errors_per_s=(_windowed(rows, "errors_per_s", slot, k)
                      if any(r["errors_per_s"] for r in rows) else None),
        latency=latency,
        histogram=[(b, n) for b, n in report["histogram_ms"]])


def _g(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


HEADROOM = 1.35  # y-axis top over the highest value of the load panel

# Drawn in this order, each over the last: where p99 equals max (few samples in a slot), the
# dotted max line and its crosses lie on p99's circles and both stay visible.
LATENCY_STYLES = {
    "p50": {"color": "tab:green", "marker": ".", "linestyle": "-", "zorder": 3},
    "p99": {"color": "tab:purple", "marker": "o", "markersize": 5, "linestyle": "-",
            "zorder": 4},
    "max": {"color": "tab:red", "marker": "x", "markersize": 4, "linestyle": ":",
            "zorder": 5},
}


def write_plot(report: dict[str, Any], path: str) -> None:
    """Three panels: load over time, latency percentiles over time, latency histogram."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    s = series(report)
    fig, (ax_load, ax_lat, ax_hist) = plt.subplots(3, 1, figsize=(10, 10))
    ax_lat.sharex(ax_load)
    lat = report["latency_ms"]
    fig.suptitle(
        f"{report['scenario']}: {report['connections']:,} connections, "
        f"{report['msgs_per_s']:,.0f} msgs/s (mean over the {report['duration_s']:g} s "
        f"measured), p50 {_g(lat['p50'])} ms, p99 {_g(lat['p99'])} ms, "
        f"errors {report['errors']}", fontsize=11)

    start = report["measure_start_s"]
    for ax in (ax_load, ax_lat):
        if report["duration_s"]:
            ax.axvspan(start, start + report["duration_s"], color="0.93", zorder=0,
                       label="measured")

    ax_load.plot(s.open.x, s.open.y, color="tab:blue", label="open connections")
    ax_load.set_ylabel("open connections")
    ax_load.set_xlabel("seconds since start")
    ax_rate = ax_load.twinx()
    over = f"over {s.window_s:g} s"
    ax_rate.plot(s.received_per_s.x, s.received_per_s.y, color="tab:orange",
                 label=f"msgs received/s ({over})")
    if s.errors_per_s is not None:
        ax_rate.plot(s.errors_per_s.x, s.errors_per_s.y, color="tab:red",
                     label=f"errors/s ({over})")
    ax_rate.set_ylabel("msgs/s")
    # Headroom above both lines for the legend, which would otherwise hide their tops.
    ax_load.set_ylim(0, max((v for v in s.open.y if not math.isnan(v)), default=1) * HEADROOM)
    rates = s.received_per_s.y + (s.errors_per_s.y if s.errors_per_s is not None else [])
    ax_rate.set_ylim(0, max(rates + [1.0]) * HEADROOM)
    lines = ax_load.get_legend_handles_labels()
    lines2 = ax_rate.get_legend_handles_labels()
    ax_load.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax_load.set_title(f"load over time: open connections, msgs received/s {over}", fontsize=10)

    for key, style in LATENCY_STYLES.items():
        line = s.latency[key]
        if line.x:
            ax_lat.plot(line.x, [max(v, 1e-3) for v in line.y], label=key, **style)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency ms (log)")
    ax_lat.set_xlabel("seconds since start")
    ax_lat.set_title(f"latency over time: p50, p99 and max of each {s.slot_s:g} s",
                     fontsize=10)
    ax_lat.legend(loc="upper left", fontsize=8)

    if s.histogram:
        xs = [max(b, 1e-3) for b, _ in s.histogram]
        # Re-bin the 1% buckets into ~60 log-spaced bars so the shape is readable.
        lo, hi = math.log10(min(xs)) - 0.01, math.log10(max(xs)) + 0.01
        edges = [10 ** (lo + (hi - lo) * k / 60) for k in range(61)]
        ax_hist.hist(xs, bins=edges, weights=[n for _, n in s.histogram], color="tab:blue")
        ax_hist.set_xscale("log")
        for key, color in (("p50", "tab:green"), ("p90", "tab:orange"), ("p99", "tab:purple")):
            if lat[key] is not None:
                ax_hist.axvline(max(lat[key], 1e-3), color=color, linestyle="--",
                                label=f"{key} {_g(lat[key])} ms")
        ax_hist.legend(fontsize=8)
    ax_hist.set_xlabel("latency ms (log)")
    ax_hist.set_ylabel("messages")
    ax_hist.set_title("latency histogram", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
