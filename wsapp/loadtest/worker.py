"""One client process: a gevent hub running its share of the scenario, steered over a pipe.

The coordinator says when to start measuring ("go"), what everyone published ("drain") and
when to stop early ("abort"); the worker tells it each phase it enters, sends progress
snapshots twice a second, then its full stats. Workers run in spawned processes, so each has
its own hub and file limit.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from typing import Any

import gevent

from wsapp.loadtest.limits import LimitError, raise_nofile
from wsapp.loadtest.options import Config, files_needed
from wsapp.loadtest.scenarios import SCENARIO_CLASSES, Scenario
from wsapp.loadtest.stats import CpuMeter, WorkerStats, max_rss_mb

PROGRESS_EVERY = 0.5  # seconds between snapshots to the coordinator


class Aborted(Exception):
    """The coordinator asked to stop (Ctrl-C, or another worker failed)."""


class Worker:
    """Runs the phases of one scenario share and talks to the coordinator."""

    def __init__(self, cfg: Config, index: int, pipe: Pipe) -> None:
        self.cfg = cfg
        self.index = index
        self.pipe = pipe
        self.stats = WorkerStats(cfg.origin_time, cfg.slot())
        self.scenario: Scenario = SCENARIO_CLASSES[cfg.scenario](cfg, index, self.stats)
        self.cpu = CpuMeter()
        self.live_cpu = CpuMeter()
        self.last_progress = 0.0
        self.cpu_at, self.cpu_now = time.monotonic(), 0.0  # the last live CPU figure
        self.inbox: list[dict[str, Any]] = []
        self.orphaned = False  # the coordinator went away (killed): wind down quietly

    def send(self, msg: dict[str, Any]) -> None:
        """One message to the coordinator; if it is gone, note it and stop at the next poll."""
        if self.orphaned:
            return
        try:
            self.pipe.send(msg)
        except OSError:
            self.orphaned = True

    def progress(self, force: bool = False) -> None:
        """A snapshot for the live display, at most every PROGRESS_EVERY seconds."""
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY:
            return
        self.last_progress = now
        if now - self.cpu_at >= PROGRESS_EVERY:  # over a shorter span the share is tick noise
            self.cpu_at, self.cpu_now = now, self.live_cpu.mark()
        st = self.stats
        st.sample_open()
        window, st.window = st.window, type(st.window)()
        self.send({"type": "progress", "index": self.index,
                   "open": st.open_now, "attempted": st.attempted, "opened": st.opened,
                   "sent": st.sent, "received": st.received,
                   "errors": sum(st.errors.values()), "window": window.to_dict(),
                   "cpu": self.cpu_now, "time": time.time()})

    def poll(self) -> None:
        """Read whatever the coordinator sent; raise Aborted on an abort."""
        try:
            while not self.orphaned and self.pipe.poll(0):
                msg = self.pipe.recv()
                if msg.get("type") == "abort":
                    raise Aborted()
                self.inbox.append(msg)
        except (EOFError, OSError):
            self.orphaned = True
        if self.orphaned:
            raise Aborted()

    def wait_for(self, kind: str) -> dict[str, Any]:
        """Block (cooperatively) until the coordinator sends a message of `kind`."""
        while True:
            self.poll()
            for msg in self.inbox:
                if msg.get("type") == kind:
                    self.inbox.remove(msg)
                    return msg
            self.progress()
            gevent.sleep(0.02)

    def phase(self, name: str, fn: Callable[[], None], abortable: bool = True) -> None:
        """Run one phase in a greenlet while answering the pipe; record its CPU use.

        The coordinator hears of the phase at once: its per-phase figures (the server's CPU)
        start and end with the workers' phases, not with the next progress snapshot.
        """
        self.progress(force=True)  # the numbers the phase ends on, for the display
        self.send({"type": "phase", "index": self.index, "name": name})
        self.cpu.mark()
        t0 = time.monotonic()
        g = gevent.spawn(fn)
        try:
            while not g.ready():
                g.join(timeout=0.1)
                if abortable:
                    try:
                        self.poll()
                    except Aborted:
                        g.kill()
                        raise
                self.progress()
            g.get()  # re-raise a crash in the phase
        finally:
            pct = self.cpu.mark()
            # CPU time ticks in 10 ms steps: a share of a very short phase is only noise.
            if time.monotonic() - t0 >= 0.5:
                self.stats.cpu_pct[name] = round(pct, 1)
                if self.cpu.wait_pct is not None:
                    self.stats.cpu_wait_pct[name] = round(self.cpu.wait_pct, 1)

    def run(self) -> None:
        """setup -> ready -> go -> measure -> measured -> drain -> teardown -> result."""
        cfg, st, sc = self.cfg, self.stats, self.scenario
        try:
            t0 = time.time()
            self.phase("setup", sc.setup)
            st.setup_s = time.time() - t0
            self.progress(force=True)
            self.send({"type": "ready", "index": self.index})
            go = self.wait_for("go")
            while time.time() < go["start"]:
                self.poll()
                gevent.sleep(min(0.02, max(0.0, go["start"] - time.time())))
            st.measure_start = go["start"]
            self.phase("measure", lambda: sc.measure(go["start"], go["end"]))
            st.measure_end = time.time()
            self.send({"type": "measured", "index": self.index, "published": sc.published()})
            drain = self.wait_for("drain")
            expected = sc.expect(drain["published"])
            self.phase("drain", lambda: sc.drain(expected, time.time() + cfg.drain))
        except Aborted:
            st.record_error("aborted", "run stopped before the end")
            if not st.measure_end and st.measure_start:
                st.measure_end = time.time()
        except Exception as exc:
            st.record_error("client_bug", "".join(traceback.format_exception(exc))[-300:])
        finally:
            try:
                self.phase("teardown", sc.teardown, abortable=False)
            finally:
                st.rss_mb = round(max_rss_mb(), 1)
                self.progress(force=True)
                self.send({"type": "result", "index": self.index, "stats": st.to_dict()})


def worker_main(cfg: Config, index: int, pipe: Pipe) -> None:
    """Entry point of a spawned worker process."""
    # Ctrl-C goes to the whole process group; the coordinator decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        raise_nofile(files_needed(cfg), cfg.connections, cfg.processes)
    except LimitError as exc:
        pipe.send({"type": "fatal", "index": index, "kind": "fd_limit", "message": str(exc)})
        return
    Worker(cfg, index, pipe).run()
    try:
        pipe.close()
    except OSError:
        pass
