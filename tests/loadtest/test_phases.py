"""The run's phases, without a server: when each begins and ends, the CPU figure each gets
(the last one included), and the one-line progress report a CI log shows for each."""

from __future__ import annotations

import os
import time

import pytest

from wsapp.loadtest.display import progress_line
from wsapp.loadtest.options import Config
from wsapp.loadtest.runner import Coordinator, Progress, run_phase
from wsapp.loadtest.servercpu import ServerCpu


def test_run_phase_starts_with_the_first_worker_and_waits_for_the_last() -> None:
    assert run_phase(["starting", "starting"]) == "starting"
    assert run_phase(["setup", "starting"]) == "setup"  # one is opening connections already
    assert run_phase(["waiting", "setup"]) == "setup"
    assert run_phase(["measure", "measure"]) == "measure"
    assert run_phase(["teardown", "drain"]) == "drain"
    assert run_phase(["done", "teardown"]) == "teardown"
    assert run_phase(["done", "done"]) == "done"


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_every_phase_gets_its_cpu_figure_when_it_ends_the_last_included() -> None:
    # The coordinator's bookkeeping with our own process standing in for the server: two
    # workers move through the phases; CPU is burnt while measuring, not while draining.
    meter = ServerCpu(os.getpid())
    entered: list[str] = []

    def on_phase(phase: str) -> None:
        entered.append(phase)
        meter.enter(phase)

    coord = Coordinator(Config(scenario="echo", url="ws://127.0.0.1:1/"), on_phase=on_phase)
    coord.worker_phases = ["starting", "starting"]
    coord.worker_moved(0, "setup")
    coord.worker_moved(1, "setup")
    coord.worker_moved(0, "waiting")
    coord.worker_moved(1, "waiting")
    coord.worker_moved(0, "measure")
    coord.worker_moved(1, "measure")
    burn(0.3)
    coord.worker_moved(0, "drain")
    coord.worker_moved(1, "drain")
    time.sleep(0.2)
    coord.worker_moved(0, "teardown")
    coord.worker_moved(0, "setup")  # late or repeated news never moves a worker back
    coord.worker_moved(1, "teardown")
    coord.worker_moved(1, "done")
    coord.worker_moved(0, "done")

    assert entered == ["setup", "waiting", "measure", "drain", "teardown", "done"]
    assert set(meter.pct) == set(meter.wait_pct) == {"setup", "measure", "drain", "teardown"}
    assert set(coord.phase_s) == {"setup", "waiting", "measure", "drain", "teardown"}
    assert coord.phase_s["measure"] >= 0.3 and coord.phase_s["drain"] >= 0.2
    # A busy loop is on a CPU or waiting for one the whole time; a sleep is on neither.
    assert meter.pct["measure"] + meter.wait_pct["measure"] == pytest.approx(100, abs=15)
    assert meter.pct["measure"] > 20
    assert meter.pct["drain"] < 15


def test_a_gone_process_gives_no_figures() -> None:
    meter = ServerCpu(2**22 + 1)  # above the largest pid Linux hands out
    meter.enter("measure")
    meter.enter("done")
    assert meter.pct == {} and meter.wait_pct == {}


def test_progress_line_fits_80_columns_even_for_a_big_run() -> None:
    big = Progress(phase="teardown", target=100_000, open=99_950, msgs_per_s=99_940.0,
                   errors=9_999, p50=123.4, p99=99_940.0, cpu=[35.0, 100.0], elapsed=999.0)
    line = progress_line(big)
    assert len(line) <= 80, line
    assert line == (" 999s teardown open 100k/100k 99.9k msg/s err 9,999 p50 123ms p99 99.9s "
                    "cpu 100%")
    small = Progress(phase="measure", target=200, open=200, msgs_per_s=2593.4, p50=0.52,
                     p99=1116.0, cpu=[22.0], elapsed=12.0)
    assert progress_line(small) == ("  12s measure  open 200/200 2,593 msg/s err 0 p50 0.5ms "
                                    "p99 1.1s cpu 22%")
