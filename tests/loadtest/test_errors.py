"""The failures a user must understand at once: each has its own message and exit code."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any


def test_unreachable_server(tmp_path: Path, run_loadtest: Any, unused_port: int) -> None:
    port = unused_port
    run = run_loadtest(["echo", "--url", f"ws://127.0.0.1:{port}", "-c", "5",
                        "--duration", "1"], tmp_path)
    assert run.code == 3, run.out
    assert "cannot reach the server" in run.out and "connection refused" in run.out
    assert run.report is None


def test_handshake_refused_shows_status(lt_server: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["echo", "--url", lt_server + "/no/such/endpoint", "-c", "5",
                        "--duration", "1"], tmp_path)
    assert run.code == 4, run.out
    assert "refused the WebSocket handshake" in run.out
    assert "404" in run.out


def test_open_file_limit_too_low(tmp_path: Path, run_loadtest: Any) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    # The limit check comes before any connection, so no server is needed.
    run = run_loadtest(["idle", "--url", "ws://127.0.0.1:9", "-c", "1000"], tmp_path,
                       preexec=low_limit)
    assert run.code == 5, run.out
    assert "open-file limit too low" in run.out
    assert "ulimit -n" in run.out and "--processes" in run.out


def test_errors_over_threshold_exit_1(lt_server: str, tmp_path: Path, run_loadtest: Any) -> None:
    # Messages over the server's 1 MiB limit: it closes each connection with 1009.
    run = run_loadtest(["echo", "--url", lt_server, "-c", "5", "--duration", "1",
                        "--size", str(2 * 1024 * 1024), "--drain", "1"], tmp_path)
    assert run.code == 1, run.out
    rep = run.report
    assert rep["errors"] > 0 and rep["ok"] is False
    assert any(k.startswith("closed_by_server_1009") for k in rep["errors_by_kind"]), rep
    assert "above --max-error-rate" in run.out


def test_bad_source_ips(tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["idle", "--source-ips", "127.0.0.9-127.0.0.1"], tmp_path)
    assert run.code == 2
    assert "bad address range" in run.out


def test_bad_token_closed_with_4401(ws_route: str, tmp_path: Path, run_loadtest: Any) -> None:
    run = run_loadtest(["chat", "--url", ws_route, "--token", "not-a-token", "-c", "5",
                        "--duration", "1"], tmp_path)
    assert run.code == 4, run.out
    assert "4401" in run.out and "--token" in run.out


def test_server_pid_that_is_not_there(tmp_path: Path, run_loadtest: Any) -> None:
    # Checked before connecting: a typo must not cost a whole run without server figures.
    run = run_loadtest(["echo", "--url", "ws://127.0.0.1:9", "--server-pid", str(2**22 + 1)],
                       tmp_path)
    assert run.code == 2, run.out
    assert f"--server-pid {2**22 + 1}: no such process" in run.out
