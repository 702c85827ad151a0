"""The run's report: one JSON document (fields in docs/loadtest.md) and a PNG picture."""

from __future__ import annotations

import datetime
import json
import math
import os
from typing import Any

from wsapp.loadtest.options import Config
from wsapp.loadtest.runner import Outcome
from wsapp.loadtest.stats import Merged

CPU_WARN_PCT = 85.0  # above this a client process was probably the bottleneck
# Above this share of the time spent runnable but without a CPU, the machine was crowded.
CROWDED_WAIT_PCT = 30.0
REPORT_VERSION = 1


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def build(cfg: Config, m: Merged, outcome: Outcome, *, max_error_rate: float,
          server_cpu_pct: dict[str, float] | None = None,
          server_wait_pct: dict[str, float] | None = None,
          loadavg: tuple[float, float] | None = None) -> dict[str, Any]:
    """Assemble the JSON report from the merged stats.

    `loadavg` is the 1-minute load before and after the run: on a shared machine it tells
    whether other work competed for the CPUs.
    """
    c = m.counters
    measured = max(m.measure_end - m.measure_start, 1e-9) if m.measure_start else 0.0
    errors = sum(m.errors.values())
    operations = c["attempted"] + max(c["expected"], c["sent"])
    error_rate = errors / operations if operations else (1.0 if errors else 0.0)
    cpu = {phase: [_r(p) for p in pcts] for phase, pcts in m.cpu_pct.items()}
    busy = [(p, phase) for phase in ("setup", "measure") for p in m.cpu_pct.get(phase, [])]
    cpu_max = max(busy, default=(0.0, ""))
    cpu_warning = None
    if cpu_max[0] > CPU_WARN_PCT:
        cpu_warning = (f"a client process used {cpu_max[0]:.0f}% of a core during {cpu_max[1]}: "
                       "the client may be the bottleneck (try --processes "
                       f"{cfg.processes + 1} or more)")
    waits = [(v, "client") for ph in ("setup", "measure") for v in m.cpu_wait_pct.get(ph, [])]
    waits += [(v, "server") for ph, v in (server_wait_pct or {}).items()]
    wait_max = max(waits, default=(0.0, ""))
    machine_warning = None
    if wait_max[0] > CROWDED_WAIT_PCT:
        machine_warning = (f"the {wait_max[1]} waited for a CPU {wait_max[0]:.0f}% of the time: "
                           "other work on this machine limited these figures")
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "scenario": cfg.scenario,
        "url": cfg.url,
        "started_at": datetime.datetime.fromtimestamp(outcome.started, datetime.UTC)
        .isoformat(timespec="seconds").replace("+00:00", "Z"),
        "options": cfg.as_report(),
        "connections": c["peak_open"],
        "connections_target": cfg.connections,
        "connect": {
            "attempted": c["attempted"],
            "opened": c["opened"],
            "failed": c["attempted"] - c["opened"],
            "setup_s": _r(m.setup_s, 2),
            "per_s": _r(c["opened"] / measured if cfg.scenario == "churn" and measured
                        else c["opened"] / m.setup_s if m.setup_s else None),
            "ms": m.connect.summary(),
        },
        "duration_s": _r(measured, 2),
        "measure_start_s": _r(m.measure_start - outcome.started if m.measure_start else 0.0, 2),
        "messages": {
            "sent": c["sent"],
            "received": c["received"],
            "expected": c["expected"],
            "lost": m.errors.get("lost", 0),
            "late": c["late"],
            "published": sum(m.published.values()),
        },
        "msgs_per_s": _r(c["received"] / measured if measured else 0.0),
        "sent_per_s": _r(c["sent"] / measured if measured else 0.0),
        "bytes_per_s": {"in": _r(c["bytes_received"] / measured if measured else 0.0, 0),
                        "out": _r(c["bytes_sent"] / measured if measured else 0.0, 0)},
        "latency_ms": m.latency.summary(),
        "errors": errors,
        "error_rate": round(error_rate, 6),
        "max_error_rate": max_error_rate,
        "errors_by_kind": dict(m.errors.most_common()),
        "error_examples": m.error_samples,
        "client": {
            "processes": cfg.processes,
            "cpu_pct": cpu,
            "cpu_wait_pct": {ph: [_r(p) for p in v] for ph, v in m.cpu_wait_pct.items()},
            "cpu_max_pct": _r(cpu_max[0]),
            "rss_mb": m.rss_mb,
            "warning": cpu_warning,
        },
        "server_cpu_pct": server_cpu_pct or None,
        "server_cpu_wait_pct": server_wait_pct or None,
        "machine": {"cpus": os.cpu_count(),
                    "loadavg_1m": list(loadavg) if loadavg else None,
                    "warning": machine_warning},
        "timeline": timeline(m),
        "histogram_ms": [[round(b, 4), n] for b, n in m.latency.buckets_ms()],
    }
    if cfg.scenario == "broadcast":
        report["broadcast"] = {
            "subscribers": c["subscribed"],
            "messages": len(m.deliveries),
            "complete": sum(1 for d in m.deliveries.values() if d[3] >= c["subscribed"]),
            "first_ms": m.first.summary(),
            "last_ms": m.last.summary(),
        }
    if outcome.fatal:
        report["fatal"] = {"kind": outcome.fatal_kind, "message": outcome.fatal}
    report["interrupted"] = outcome.interrupted
    report["ok"] = not outcome.fatal and not outcome.interrupted and error_rate <= max_error_rate
    return report


def _g(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def timeline(m: Merged) -> list[dict[str, Any]]:
    """Timeline rows (slot start in seconds since the run started; rates per second)."""
    rows = []
    w = m.slot
    for idx in sorted(m.seconds):
        s = m.seconds[idx]
        rows.append({
            "t": round(idx * w, 2),
            "open": s.open_now,
            "opened_per_s": _r(s.opened / w),
            "sent_per_s": _r(s.sent / w),
            "received_per_s": _r(s.received / w),
            "errors_per_s": _r(s.errors / w),
            "p50": _r(s.latency.percentile(50), 3),
            "p99": _r(s.latency.percentile(99), 3),
            "max": _r(s.latency.max if s.latency.count else None, 3),
        })
    return rows


def write_json(report: dict[str, Any], path: str) -> None:
    """Write the report, creating the directory if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def write_plot(report: dict[str, Any], path: str) -> None:
    """Three panels: load over time, latency percentiles over time, latency histogram."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    step = rows[1]["t"] - rows[0]["t"] if len(rows) > 1 else 1.0
    t = [r["t"] + step / 2 for r in rows]  # plot each slot at its middle
    fig, (ax_load, ax_lat, ax_hist) = plt.subplots(3, 1, figsize=(10, 10))
    ax_lat.sharex(ax_load)
    lat = report["latency_ms"]
    fig.suptitle(
        f"{report['scenario']}: {report['connections']:,} connections, "
        f"{report['msgs_per_s']:,.0f} msgs/s, p50 {_g(lat['p50'])} ms, "
        f"p99 {_g(lat['p99'])} ms, errors {report['errors']}", fontsize=11)

    start = report["measure_start_s"]
    for ax in (ax_load, ax_lat):
        if report["duration_s"]:
            ax.axvspan(start, start + report["duration_s"], color="0.93", zorder=0,
                       label="measured")

    ax_load.plot(t, [math.nan if r["open"] is None else r["open"] for r in rows],
                 color="tab:blue", label="open connections")
    ax_load.set_ylabel("open connections")
    ax_load.set_xlabel("seconds since start")
    ax_rate = ax_load.twinx()
    ax_rate.plot(t, [r["received_per_s"] for r in rows], color="tab:orange",
                 label="msgs received/s")
    if any(r["errors_per_s"] for r in rows):
        ax_rate.plot(t, [r["errors_per_s"] for r in rows], color="tab:red", label="errors/s")
    ax_rate.set_ylabel("per second")
    lines = ax_load.get_legend_handles_labels()
    lines2 = ax_rate.get_legend_handles_labels()
    ax_load.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax_load.set_title("load over time", fontsize=10)

    for key, color in (("p50", "tab:green"), ("p99", "tab:purple"), ("max", "tab:red")):
        pts = [(x, r[key]) for x, r in zip(t, rows, strict=True) if r[key] is not None]
        if pts:
            ax_lat.plot([p[0] for p in pts], [max(p[1], 1e-3) for p in pts], marker=".",
                        color=color, label=key)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency ms (log)")
    ax_lat.set_xlabel("seconds since start")
    ax_lat.set_title("latency over time (per second)", fontsize=10)
    ax_lat.legend(loc="upper left", fontsize=8)

    hist = report["histogram_ms"]
    if hist:
        xs = [max(b, 1e-3) for b, _ in hist]
        # Re-bin the 1% buckets into ~60 log-spaced bars so the shape is readable.
        lo, hi = math.log10(min(xs)) - 0.01, math.log10(max(xs)) + 0.01
        edges = [10 ** (lo + (hi - lo) * k / 60) for k in range(61)]
        ax_hist.hist(xs, bins=edges, weights=[n for _, n in hist], color="tab:blue")
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
