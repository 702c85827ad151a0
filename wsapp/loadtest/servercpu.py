"""The server's CPU per phase of the run (`--server-pid`), as % of one core, and the share of
the time it waited for a CPU.

The coordinator calls `enter(phase)` at each phase boundary and `enter("done")` when the run
ends, so every phase, the last one included, gets its figure the moment it ends. (An earlier
design closed a phase only when a later progress update named another one: the last phase
never got a figure, and often neither did measure.)

Figures come from /proc/PID/task/*/schedstat: nanoseconds on a CPU and waiting for one, per
thread, summed over the process. That resolves a 50 ms drain as well as a 30 s hold; the
tick counts of /proc/PID/stat (10 ms steps) are the fallback where schedstat is missing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# The phases a run reports, in order; others ("starting", "waiting", "done") only mark edges.
REPORTED = ("setup", "measure", "drain", "teardown")


@dataclass(frozen=True)
class Sample:
    """One reading of a process: when (monotonic s), CPU used and CPU waited (s, totals)."""

    at: float
    cpu_s: float
    wait_s: float | None


def read_process(pid: int) -> Sample | None:
    """CPU and run-queue wait of every thread of `pid` so far; None when it is gone."""
    at = time.monotonic()
    cpu = wait = 0.0
    seen = False
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                on_cpu, waited = (task / "schedstat").read_text().split()[:2]
            except (OSError, ValueError):
                continue  # the thread ended between listing and reading
            cpu += int(on_cpu) / 1e9
            wait += int(waited) / 1e9
            seen = True
    except OSError:
        return None
    if seen:
        return Sample(at, cpu, wait)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat; after the ")" they are the 12th and 13th.
    return Sample(at, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), None)


class ServerCpu:
    """Per-phase CPU % of one core (`pct`) and % of the time waiting for a CPU (`wait_pct`)
    of the process `pid` (the phases' lengths are the coordinator's `Outcome.phase_s`)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.phase = ""
        self.since: Sample | None = None
        self.pct: dict[str, float] = {}
        self.wait_pct: dict[str, float] = {}

    def enter(self, phase: str) -> None:
        """The run moved to `phase`: close the figure of the phase that just ended."""
        now = read_process(self.pid)
        if self.since is not None and now is not None and self.phase in REPORTED:
            # A phase can be a few ms (an empty drain): the span is floored at 1 ms so the
            # figure stays finite; the report gives each phase's length beside it.
            span = max(now.at - self.since.at, 1e-3)
            self.pct[self.phase] = round(max(0.0, now.cpu_s - self.since.cpu_s) * 100 / span, 1)
            if now.wait_s is not None and self.since.wait_s is not None:
                self.wait_pct[self.phase] = round(
                    max(0.0, now.wait_s - self.since.wait_s) * 100 / span, 1)
        self.phase, self.since = phase, now
