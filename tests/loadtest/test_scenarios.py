"""Each scenario, small (50-200 connections, ~2 s), against a live serve.py; the JSON report
must show every connection opened, zero errors and every expected message received, and the
server's CPU (--server-pid) for every phase, in the report and in the summary."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

LATENCY_KEYS = {"count", "min", "mean", "p50", "p90", "p99", "p999", "max"}
PHASES = ("setup", "measure", "drain", "teardown")


def process_cpu_s(pid: int) -> float:
    """The server's CPU seconds so far, read the way `top` does (/proc/PID/stat ticks): a
    yardstick independent of the load tester's own per-thread schedstat reading."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_with_server_cpu(run_loadtest: Any, args: list[str], tmp_path: Path, pid: int,
                        **kw: Any) -> Any:
    """Run the CLI with --server-pid; check the server-CPU figures against the yardstick."""
    before = process_cpu_s(pid)
    run = run_loadtest([*args, "--server-pid", str(pid)], tmp_path, **kw)
    used = process_cpu_s(pid) - before
    assert run.code == 0, run.out
    threads = len(os.listdir(f"/proc/{pid}/task"))
    check_server_cpu(run, used, busy_setup=args[0] != "churn", threads=threads)
    return run


def check_server_cpu(run: Any, used_s: float, busy_setup: bool, threads: int = 1) -> None:
    """Every phase has a figure, plausible on its own and, summed over the phases, within the
    CPU the server really used during the whole run; the summary shows each one."""
    rep = run.report
    pct, wait, lengths = rep["server_cpu_pct"], rep["server_cpu_wait_pct"], rep["phase_s"]
    assert set(pct) == set(wait) == set(PHASES), (pct, wait)
    assert set(PHASES) <= set(lengths), lengths
    assert lengths["measure"] == pytest.approx(rep["options"]["duration"], abs=0.6)
    for phase in PHASES:
        assert 0 <= pct[phase] <= 100 * (os.cpu_count() or 1), (phase, pct)
        # The wait is summed over the server's threads (gevent's pool threads included), each
        # of which can wait the whole phase: on a crowded machine the sum passes one CPU per
        # core, so its bound is one phase per thread (plus 20 ms of sampling skew).
        waited_s = wait[phase] * max(lengths[phase], 1e-3) / 100
        assert 0 <= waited_s <= threads * lengths[phase] + 0.02, (phase, wait, threads)
    # Each scenario makes the server work while measuring (echoes, deliveries, handshakes,
    # pings) and while tearing down (close handshakes); all but churn open in setup.
    assert pct["measure"] > 0 and pct["teardown"] > 0, pct
    if busy_setup:
        assert pct["setup"] > 0, pct
    # The phases cover most of the run (not the worker start-up nor the 0.3 s before the
    # shared start): their CPU seconds lie within what the server used, 10 ms ticks apart.
    covered = sum(pct[p] * lengths[p] / 100 for p in PHASES)
    assert covered <= used_s + 0.03, (covered, used_s, pct, lengths)
    assert covered >= 0.5 * used_s - 0.03, (covered, used_s, pct, lengths)
    # The summary's row, once its table cell is unfolded.
    flat = " ".join(run.out.replace("│", " ").split())
    row = re.search(r"server CPU (.*?) of one core", flat)
    assert row, run.out
    for phase in PHASES:
        assert f"{phase} {pct[phase]:.0f}% (" in row.group(1), (phase, row.group(1))


def check_report(rep: dict, scenario: str, connections: int) -> None:
    """The fields every report has, with a clean run's values."""
    assert rep["scenario"] == scenario
    assert rep["connections_target"] == connections
    assert rep["errors"] == 0, rep["errors_by_kind"]
    assert rep["error_rate"] == 0
    assert rep["ok"] is True
    assert rep["connect"]["failed"] == 0
    assert set(rep["latency_ms"]) == LATENCY_KEYS
    lat = rep["latency_ms"]
    assert lat["count"] > 0
    assert 0 <= lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert rep["messages"]["received"] == rep["messages"]["expected"] > 0
    assert rep["messages"]["lost"] == 0
    assert rep["msgs_per_s"] > 0
    assert rep["duration_s"] == pytest.approx(2.0, abs=0.5)
    assert rep["timeline"] and rep["histogram_ms"]
    assert sum(n for _, n in rep["histogram_ms"]) == lat["count"]
    assert rep["client"]["cpu_pct"]["measure"]


# One progress line as printed to a pipe: every field, each in its compact form.
PROGRESS_LINE = re.compile(
    r"^ *\d+s (starting|setup|waiting|measure|drain|teardown|done) +open [\d,.kM]+/[\d,.kM]+ "
    r"[\d,.kM]+ msg/s err [\d,.kM]+ p50 (-|[\d.]+m?s) p99 (-|[\d.]+m?s) cpu (-|\d+%)$")


def check_plain_output(stdout: str) -> None:
    """Output to a pipe (a CI log): no line wider than 80 columns, each progress update one
    whole line, and one for every phase the run went through."""
    lines = stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [x for x in lines if len(x) > 80]
    progress = [line for line in lines if re.match(r"^ *\d+s ", line)]
    assert all(PROGRESS_LINE.match(line) for line in progress), progress
    seen = {PROGRESS_LINE.match(line).group(1) for line in progress}
    assert {"setup", "measure", "drain", "teardown"} <= seen, progress


def test_idle(lt_server: str, server_pid: int, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_with_server_cpu(run_loadtest, ["idle", "--url", lt_server, "-c", "200",
                                             "--duration", "2", "--plot",
                                             str(tmp_path / "idle.png")], tmp_path, server_pid,
                              quiet=False)
    check_plain_output(run.stdout)
    rep = run.report
    check_report(rep, "idle", 200)
    assert rep["connections"] == 200  # all open at once
    assert rep["connect"]["opened"] == 200
    # One liveness ping per connection at the end of the hold, all answered.
    assert rep["messages"]["sent"] == rep["messages"]["received"] == 200
    assert (tmp_path / "idle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "idle against" in run.out and "p99" in run.out


def test_echo_ping_pong(lt_server: str, server_pid: int, tmp_path: Path,
                       run_loadtest: Any) -> None:
    run = run_with_server_cpu(run_loadtest, ["echo", "--url", lt_server, "-c", "100",
                                             "--duration", "2", "--size", "64"],
                              tmp_path, server_pid)
    rep = run.report
    check_report(rep, "echo", 100)
    assert rep["connections"] == 100
    assert rep["messages"]["sent"] == rep["messages"]["received"]
    assert rep["options"]["rate"] == 0


def test_echo_fixed_rate_two_processes(lt_server: str, server_pid: int, tmp_path: Path,
                                      run_loadtest: Any) -> None:
    run = run_with_server_cpu(run_loadtest, ["echo", "--url", lt_server, "-c", "100",
                                             "--duration", "2", "--rate", "5",
                                             "--processes", "2",
                                             "--source-ips", "127.0.0.1-127.0.0.2"],
                              tmp_path, server_pid)
    rep = run.report
    check_report(rep, "echo", 100)
    assert len(rep["client"]["cpu_pct"]["measure"]) == 2
    # 100 clients x 5 msgs/s x 2 s, open loop: the count is fixed by the schedule.
    assert rep["messages"]["sent"] == pytest.approx(1000, abs=10)
    assert rep["options"]["source_ips"] == ["127.0.0.1", "127.0.0.2"]


def test_churn(lt_server: str, server_pid: int, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_with_server_cpu(run_loadtest, ["churn", "--url", lt_server, "-c", "50",
                                             "--rate", "50", "--duration", "2"],
                              tmp_path, server_pid)
    rep = run.report
    check_report(rep, "churn", 50)
    # 50 connects/s for 2 s, each living 1 s: ~100 opened, ~50 open at once.
    assert rep["connect"]["opened"] == pytest.approx(100, abs=3)
    assert 35 <= rep["connections"] <= 60
    assert rep["connect"]["per_s"] == pytest.approx(50, rel=0.15)


def test_broadcast(ws_route: str, server_pid: int, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_with_server_cpu(run_loadtest, ["broadcast", "--url", ws_route, "-c", "100",
                                             "--rate", "5", "--duration", "2",
                                             "--processes", "2"], tmp_path, server_pid)
    rep = run.report
    check_report(rep, "broadcast", 100)
    b = rep["broadcast"]
    published = rep["messages"]["published"]
    assert published == pytest.approx(10, abs=1)
    # Every subscriber got every message.
    assert rep["messages"]["received"] == 100 * published
    assert b["subscribers"] == 100
    assert b["messages"] == b["complete"] == published
    for key in ("first_ms", "last_ms"):
        assert set(b[key]) == LATENCY_KEYS
    assert b["first_ms"]["p50"] <= b["last_ms"]["p50"]


def test_chat(ws_route: str, server_pid: int, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_with_server_cpu(run_loadtest, ["chat", "--url", ws_route, "-c", "100",
                                             "--rooms", "10", "--rate", "1",
                                             "--duration", "2"], tmp_path, server_pid)
    rep = run.report
    check_report(rep, "chat", 100)
    published = rep["messages"]["published"]
    assert published == pytest.approx(200, abs=5)  # 100 clients x 1/s x 2 s
    # Rooms of 10: each message reaches the 9 other members.
    assert rep["messages"]["received"] == 9 * published
