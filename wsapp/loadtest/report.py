"""The run's report: one JSON document (fields in docs/loadtest.md); `plot` draws it."""

from __future__ import annotations

import datetime
import json
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
    # Like the clients' (whose phases under 0.5 s go unmeasured), only the server's setup and
    # measure phases of 0.5 s or more count: a 0.1 s setup's wait share is mostly noise.
    waits += [(v, "server") for ph, v in (server_wait_pct or {}).items()
              if ph in ("setup", "measure") and outcome.phase_s.get(ph, 0.0) >= 0.5]
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
        "phase_s": dict(outcome.phase_s),
        "timeline_slot_s": m.slot,
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
