"""The coordinator: starts the worker processes, keeps them in step, merges what they measured.

Phases are synchronised so measurement starts only when every worker has opened (and
subscribed) its connections, and each worker learns what all publishers sent before it
decides how many messages are missing.

The run's phase is told apart from the workers' own: it starts with the first worker's setup,
then moves on only when every worker has left the current phase (`run_phase`). Each move is
reported at once (`on_phase`), and "done" closes the last one, so per-phase figures such as
the server's CPU cover every phase, the last included.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from wsapp.loadtest.options import Config
from wsapp.loadtest.stats import LogHistogram
from wsapp.loadtest.worker import worker_main

START_DELAY = 0.3  # seconds between "go" and the shared measurement start
WINDOW = 3.0  # seconds of samples behind the live p50/p99
# A run's phases in order. "starting" (workers not yet running) and "done" are edges, not
# phases; "waiting" (all set up, 0.3 s before the shared start) gets a length, no figures.
PHASES = ("starting", "setup", "waiting", "measure", "drain", "teardown", "done")


def run_phase(worker_phases: list[str]) -> str:
    """The run's phase given each worker's: the earliest of them, except that setup starts
    with the first worker's (its connections load the server from then on)."""
    rank = min(PHASES.index(p) for p in worker_phases)
    if rank == 0 and any(p != "starting" for p in worker_phases):
        rank = 1
    return PHASES[rank]


@dataclass
class Progress:
    """What the live display shows, summed over workers."""

    phase: str = "starting"
    target: int = 0
    open: int = 0
    attempted: int = 0
    opened: int = 0
    sent: int = 0
    received: int = 0
    errors: int = 0
    msgs_per_s: float = 0.0
    p50: float | None = None
    p99: float | None = None
    cpu: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    measure_left: float | None = None


@dataclass
class Outcome:
    """Every worker's final stats plus how the run went."""

    results: list[dict[str, Any]]
    fatal: str | None = None
    fatal_kind: str | None = None
    interrupted: bool = False
    setup_s: float = 0.0
    started: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)  # the run's phases' lengths


class Coordinator:
    """Spawns `cfg.processes` workers and steps them through the phases."""

    def __init__(self, cfg: Config, on_progress: Callable[[Progress], None] | None = None,
                 on_phase: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.on_progress = on_progress
        self.on_phase = on_phase
        self.started = time.time()
        self.phase = "starting"
        self.phase_at = 0.0
        self.worker_phases: list[str] = []
        self.phase_s: dict[str, float] = {}
        self.latest: dict[int, dict[str, Any]] = {}
        self.windows: deque[tuple[float, LogHistogram]] = deque()
        self.rate_samples: deque[tuple[float, int]] = deque()
        self.go_end: float | None = None

    def progress(self) -> Progress:
        """The run's phase; the latest snapshots summed; msgs/s and percentiles over the last
        few seconds."""
        now = time.time()
        p = Progress(phase=self.phase, target=self.cfg.connections, elapsed=now - self.started)
        for snap in self.latest.values():
            p.open += snap["open"]
            p.attempted += snap["attempted"]
            p.opened += snap["opened"]
            p.sent += snap["sent"]
            p.received += snap["received"]
            p.errors += snap["errors"]
            p.cpu.append(snap["cpu"])
        self.rate_samples.append((now, p.received))
        while self.rate_samples and now - self.rate_samples[0][0] > WINDOW:
            self.rate_samples.popleft()
        t0, r0 = self.rate_samples[0]
        if now - t0 > 0.2:
            p.msgs_per_s = (p.received - r0) / (now - t0)
        while self.windows and now - self.windows[0][0] > WINDOW:
            self.windows.popleft()
        if self.windows:
            h = LogHistogram()
            for _, w in self.windows:
                h.merge(w)
            p.p50, p.p99 = h.percentile(50), h.percentile(99)
        if self.go_end is not None:
            p.measure_left = max(0.0, self.go_end - now)
        return p

    def worker_moved(self, index: int, phase: str) -> None:
        """Worker `index` entered `phase`; when that moves the run on, close the phase it left."""
        if PHASES.index(phase) <= PHASES.index(self.worker_phases[index]):
            return  # a worker never goes back (an abort skips phases forward only)
        self.worker_phases[index] = phase
        new = run_phase(self.worker_phases)
        if new == self.phase:
            return
        now = time.monotonic()
        if self.phase != "starting":
            self.phase_s[self.phase] = round(now - self.phase_at, 3)
        self.phase, self.phase_at = new, now
        if self.on_phase is not None:
            self.on_phase(new)
        if self.on_progress is not None:
            self.on_progress(self.progress())  # at once: a log shows every phase

    def run(self) -> Outcome:
        """Run the scenario to the end (or to Ctrl-C) and return every worker's stats."""
        cfg = self.cfg
        # forkserver: workers fork from a small clean process that has imported only the
        # worker code (not this process's rich/Flask/matplotlib state, nor a gevent hub), so
        # starting many of them is quick and they share nothing with the coordinator.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["wsapp.loadtest.worker"])
        started = self.started = time.time()
        cfg.origin_time = started
        pipes = []
        procs = []
        interrupted = False
        try:
            for i in range(cfg.processes):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(target=worker_main, args=(cfg, i, child_end),
                                   name=f"loadtest-worker-{i}", daemon=True)
                proc.start()
                child_end.close()
                pipes.append(parent_end)
                procs.append(proc)
        except KeyboardInterrupt:
            interrupted = True  # the workers already started are stopped below
        index_of = {id(p): i for i, p in enumerate(pipes)}
        self.worker_phases = ["starting"] * len(procs)
        out = Outcome(results=[{} for _ in procs], started=started, interrupted=interrupted,
                      phase_s=self.phase_s)
        ready: set[int] = set()
        measured: dict[int, dict[str, int]] = {}
        done: set[int] = set()
        dead: set[int] = set()
        go_sent = drain_sent = abort_sent = False
        abort_deadline = 0.0
        last_ui = 0.0

        def gone(i: int) -> None:
            dead.add(i)
            self.worker_moved(i, "done")

        def broadcast(msg: dict[str, Any]) -> None:
            for i, p in enumerate(pipes):
                if i not in done and i not in dead:
                    try:
                        p.send(msg)
                    except OSError:
                        gone(i)

        def abort() -> None:
            nonlocal abort_sent, abort_deadline
            if not abort_sent:
                abort_sent = True
                abort_deadline = time.time() + cfg.drain + 15.0
                broadcast({"type": "abort"})

        def handle(i: int) -> None:
            try:
                msg = pipes[i].recv()
            except (EOFError, OSError):
                gone(i)
                return
            kind = msg["type"]
            if kind == "progress":
                self.latest[i] = msg
                self.windows.append((time.time(), LogHistogram.from_dict(msg["window"])))
            elif kind == "phase":
                self.worker_moved(i, msg["name"])
            elif kind == "ready":
                ready.add(i)
                self.worker_moved(i, "waiting")
            elif kind == "measured":
                measured[i] = msg["published"]
            elif kind == "result":
                out.results[i] = msg["stats"]
                done.add(i)
                self.worker_moved(i, "done")
            elif kind == "fatal":
                out.fatal, out.fatal_kind = msg["message"], msg["kind"]
                gone(i)
                abort()

        if interrupted:
            abort()
        while len(done | dead) < len(procs):
            try:
                live = [p for i, p in enumerate(pipes) if i not in done and i not in dead]
                for p in wait(live, timeout=0.1):
                    handle(index_of[id(p)])
                for i, proc in enumerate(procs):
                    if i not in done and i not in dead and not proc.is_alive():
                        # It may have sent its result just before exiting: read that first.
                        while i not in done and i not in dead and pipes[i].poll():
                            handle(i)
                        if i not in done and i not in dead:
                            gone(i)
                            out.fatal = out.fatal or f"worker {i} exited with code {proc.exitcode}"
                            out.fatal_kind = out.fatal_kind or "worker_crashed"
                            abort()
                if not go_sent and not abort_sent and len(ready) == len(procs):
                    go_sent = True
                    start = time.time() + START_DELAY
                    self.go_end = start + cfg.duration
                    out.setup_s = start - started
                    broadcast({"type": "go", "start": start, "end": self.go_end})
                if not drain_sent and not abort_sent and len(measured) == len(procs):
                    drain_sent = True
                    total: Counter[str] = Counter()
                    for pub in measured.values():
                        total.update(pub)
                    broadcast({"type": "drain", "published": dict(total)})
                if abort_sent and time.time() > abort_deadline:
                    break
                now = time.time()
                if self.on_progress is not None and now - last_ui >= 0.25:
                    last_ui = now
                    self.on_progress(self.progress())
            except KeyboardInterrupt:
                out.interrupted = True
                abort()
        for i in range(len(procs)):
            self.worker_moved(i, "done")  # also after a give-up on the abort deadline
        for proc in procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)
        for p in pipes:
            p.close()
        out.results = [r for r in out.results if r]
        return out
