"""Each scenario, small (50-200 connections, ~2 s), against a live serve.py; the JSON report
must show every connection opened, zero errors and every expected message received."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

LATENCY_KEYS = {"count", "min", "mean", "p50", "p90", "p99", "p999", "max"}


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


def test_idle(lt_server: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["idle", "--url", lt_server, "-c", "200", "--duration", "2",
                        "--plot", str(tmp_path / "idle.png")], tmp_path)
    assert run.code == 0, run.out
    rep = run.report
    check_report(rep, "idle", 200)
    assert rep["connections"] == 200  # all open at once
    assert rep["connect"]["opened"] == 200
    # One liveness ping per connection at the end of the hold, all answered.
    assert rep["messages"]["sent"] == rep["messages"]["received"] == 200
    assert (tmp_path / "idle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "idle against" in run.out and "p99" in run.out


def test_echo_ping_pong(lt_server: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["echo", "--url", lt_server, "-c", "100", "--duration", "2",
                        "--size", "64"], tmp_path)
    assert run.code == 0, run.out
    rep = run.report
    check_report(rep, "echo", 100)
    assert rep["connections"] == 100
    assert rep["messages"]["sent"] == rep["messages"]["received"]
    assert rep["options"]["rate"] == 0


def test_echo_fixed_rate_two_processes(lt_server: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["echo", "--url", lt_server, "-c", "100", "--duration", "2",
                        "--rate", "5", "--processes", "2",
                        "--source-ips", "127.0.0.1-127.0.0.2"], tmp_path)
    assert run.code == 0, run.out
    rep = run.report
    check_report(rep, "echo", 100)
    assert len(rep["client"]["cpu_pct"]["measure"]) == 2
    # 100 clients x 5 msgs/s x 2 s, open loop: the count is fixed by the schedule.
    assert rep["messages"]["sent"] == pytest.approx(1000, abs=10)
    assert rep["options"]["source_ips"] == ["127.0.0.1", "127.0.0.2"]


def test_churn(lt_server: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["churn", "--url", lt_server, "-c", "50", "--rate", "50",
                        "--duration", "2"], tmp_path)
    assert run.code == 0, run.out
    rep = run.report
    check_report(rep, "churn", 50)
    # 50 connects/s for 2 s, each living 1 s: ~100 opened, ~50 open at once.
    assert rep["connect"]["opened"] == pytest.approx(100, abs=3)
    assert 35 <= rep["connections"] <= 60
    assert rep["connect"]["per_s"] == pytest.approx(50, rel=0.15)


def test_broadcast(ws_route: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["broadcast", "--url", ws_route, "-c", "100", "--rate", "5",
                        "--duration", "2", "--processes", "2"], tmp_path)
    assert run.code == 0, run.out
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


def test_chat(ws_route: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["chat", "--url", ws_route, "-c", "100", "--rooms", "10",
                        "--rate", "1", "--duration", "2"], tmp_path)
    assert run.code == 0, run.out
    rep = run.report
    check_report(rep, "chat", 100)
    published = rep["messages"]["published"]
    assert published == pytest.approx(200, abs=5)  # 100 clients x 1/s x 2 s
    # Rooms of 10: each message reaches the 9 other members.
    assert rep["messages"]["received"] == 9 * published
