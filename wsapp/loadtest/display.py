"""What the user sees: a live progress panel while running and a summary table at the end.

On a terminal the panel is a rich Live display. Otherwise (CI logs, pipes) one plain line
is printed at each phase change and every few seconds: compact enough to fit 80 columns
(`progress_line`), written as is so nothing breaks it in two, and flushed at once so a log
shows it while the run goes on.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from wsapp.loadtest.runner import Progress

LINE_EVERY = 5.0  # seconds between plain progress lines within one phase


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _count(v: float) -> str:
    """At most 5 characters: 9,999 then 12.3k, 100k, 1.2M."""
    if v < 9_999.5:
        return f"{v:,.0f}"
    if v < 99_950:  # the thresholds are where rounding adds a digit (99,950 -> "100k")
        return f"{v / 1000:.1f}k"
    if v < 999_500:
        return f"{v / 1000:.0f}k"
    return f"{v / 1_000_000:.1f}M"


def _latency(ms: float | None) -> str:
    """At most 5 characters, unit included: 0.5ms, 352ms, 1.1s, 99.9s."""
    if ms is None:
        return "-"
    if ms < 9.95:
        return f"{ms:.1f}ms"
    if ms < 999.5:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.1f}s" if ms < 99_950 else f"{ms / 1000:.0f}s"


def progress_line(p: Progress) -> str:
    """One line for logs, 80 columns at most for runs up to ~100k connections and 1000 s:
    the busiest client process's CPU stands for all of them (the warning uses it too)."""
    cpu = f"{max(p.cpu):.0f}%" if p.cpu else "-"
    return (f"{p.elapsed:4.0f}s {p.phase:<8} open {_count(p.open)}/{_count(p.target)} "
            f"{_count(p.msgs_per_s)} msg/s err {_count(p.errors)} p50 {_latency(p.p50)} "
            f"p99 {_latency(p.p99)} cpu {cpu}")


class LiveDisplay:
    """Context manager; call `update(progress)` as often as you like."""

    def __init__(self, console: Console, scenario: str, enabled: bool = True) -> None:
        self.console = console
        self.scenario = scenario
        self.enabled = enabled
        self.live: Live | None = None
        self.last_line = 0.0
        self.last_phase = ""

    def __enter__(self) -> LiveDisplay:
        if self.enabled and self.console.is_terminal:
            self.live = Live(self._render(Progress()), console=self.console,
                             auto_refresh=False, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _render(self, p: Progress) -> Table:
        t = Table(title=f"wsapp loadtest: {self.scenario}", title_justify="left",
                  show_header=True, header_style="bold")
        for col in ("phase", "time", "open / target", "msgs/s", "sent", "received", "errors",
                    "p50 ms", "p99 ms", "client CPU"):
            t.add_column(col, justify="right")
        left = f" ({p.measure_left:.0f}s left)" if p.measure_left else ""
        cpu = " ".join(f"{c:.0f}%" for c in p.cpu) or "-"
        t.add_row(p.phase, f"{p.elapsed:.0f}s{left}", f"{p.open:,} / {p.target:,}",
                  f"{p.msgs_per_s:,.0f}", f"{p.sent:,}", f"{p.received:,}",
                  Text(f"{p.errors:,}", style="red" if p.errors else ""),
                  _ms(p.p50), _ms(p.p99), cpu)
        return t

    def update(self, p: Progress) -> None:
        """Show the latest numbers."""
        if not self.enabled:
            return
        if self.live is not None:
            self.live.update(self._render(p), refresh=True)
            return
        now = time.monotonic()
        if now - self.last_line >= LINE_EVERY or p.phase != self.last_phase:
            self.last_line, self.last_phase = now, p.phase
            # Straight to the file: rich would fold a line longer than its width in two.
            self.console.file.write(progress_line(p) + "\n")
            self.console.file.flush()


def summary(console: Console, report: dict[str, Any]) -> None:
    """The end-of-run table: connections, throughput, percentiles, errors, client CPU."""
    lat = report["latency_ms"]
    con = report["connect"]
    msgs = report["messages"]
    t = Table(title=f"{report['scenario']} against {report['url']}", title_justify="left",
              show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("connections", f"{report['connections']:,} open at peak "
              f"(target {report['connections_target']:,}; {con['opened']:,} opened, "
              f"{con['failed']:,} failed)")
    t.add_row("connect time ms", _pcts(con["ms"]) + (
        f"   ({con['per_s']:,.0f} connects/s)" if con["per_s"] else ""))
    if report["connect"]["setup_s"] is not None:
        t.add_row("setup", f"{con['setup_s']:.1f} s before measuring")
    t.add_row("measured", f"{report['duration_s']} s")
    late = f" ({msgs['late']:,} of them arrived late)" if msgs.get("late") else ""
    t.add_row("messages", f"sent {msgs['sent']:,}, received {msgs['received']:,}, "
              f"expected {msgs['expected']:,}, lost {msgs['lost']:,}{late}")
    t.add_row("throughput", f"{report['msgs_per_s']:,.0f} msgs/s received, "
              f"{report['sent_per_s']:,.0f} sent/s")
    t.add_row("latency ms", _pcts(lat) + f"   ({lat['count']:,} samples)")
    b = report.get("broadcast")
    if b:
        t.add_row("to first receiver", _pcts(b["first_ms"]))
        t.add_row("to last receiver", _pcts(b["last_ms"]))
        t.add_row("complete messages", f"{b['complete']} of {b['messages']} reached all "
                  f"{b['subscribers']:,} subscribers")
    errs = ", ".join(f"{k} {v:,}" for k, v in report["errors_by_kind"].items()) or "none"
    style = "red" if report["errors"] else "green"
    t.add_row("errors", Text(f"{report['errors']:,} ({report['error_rate'] * 100:.3f}%): {errs}",
                             style=style))
    cl = report["client"]
    cpu = ", ".join(f"{ph} {'/'.join(f'{v:.0f}%' for v in vals)}"
                    for ph, vals in cl["cpu_pct"].items() if ph in ("setup", "measure"))
    t.add_row("client CPU", f"{cpu} of one core; {cl['processes']} process(es), "
              f"RSS {'/'.join(f'{v:.0f}' for v in cl['rss_mb'])} MiB")
    waits = ", ".join(f"{ph} {'/'.join(f'{v:.0f}%' for v in vals)}"
                      for ph, vals in cl.get("cpu_wait_pct", {}).items()
                      if ph in ("setup", "measure"))
    if waits:
        t.add_row("client waited for CPU", waits + " of the time")
    lengths = report.get("phase_s") or {}
    if report.get("server_cpu_pct"):
        t.add_row("server CPU", ", ".join(
            f"{ph} {v:.0f}% ({_seconds(lengths.get(ph))})"
            for ph, v in report["server_cpu_pct"].items()) + " of one core")
    if report.get("server_cpu_wait_pct"):
        t.add_row("server waited for CPU", ", ".join(
            f"{ph} {v:.0f}%" for ph, v in report["server_cpu_wait_pct"].items()) + " of the time")
    mach = report.get("machine") or {}
    if mach.get("loadavg_1m"):
        before, after = mach["loadavg_1m"]
        t.add_row("machine", f"{mach['cpus']} CPUs, load average {before} before, {after} after")
    console.print(t)
    for kind, example in report["error_examples"].items():
        console.print(f"  [red]{kind}[/red]: {example}", highlight=False)
    if cl["warning"]:
        console.print(f"[yellow]warning:[/yellow] {cl['warning']}")
    if mach.get("warning"):
        console.print(f"[yellow]warning:[/yellow] {mach['warning']}")


def _seconds(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f} s" if v >= 1 else f"{v:.2f} s"


def _pcts(s: dict[str, Any]) -> str:
    return (f"p50 {_ms(s['p50'])}  p90 {_ms(s['p90'])}  p99 {_ms(s['p99'])}  "
            f"p99.9 {_ms(s['p999'])}  max {_ms(s['max'])}")
