"""Settings checked at start (issue 12, finding 16), against a real serve.py and gunicorn: a
store, broker or data dir that cannot work is one line naming the flag (or variable) and
exit 2, never a server that answers 500 at first use; several workers refuse the memory
broker; an unreachable Redis is said once at start and /healthz answers 503 while an
engine is down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import serverproc
from redisproc import RedisServer
from serverproc import SERVE, free_port


def run(tmp_path, *args: str, env: dict[str, str] | None = None,
        argv: list[str] | None = None) -> tuple[int, str]:
    """(exit status, everything it printed) of a server that is expected to stop by itself
    at start; it is stopped by its PID if it serves instead."""
    log = tmp_path / f"run-{time.monotonic_ns()}.log"
    command = argv or [sys.executable, str(SERVE), "--host", "127.0.0.1", "--port",
                       str(free_port()), *args]
    proc = serverproc.spawn(command, log, env={"WSAPP_DATA_DIR": str(tmp_path / "data"),
                                               **(env or {})})
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        serverproc.stop(proc)
        raise AssertionError(f"it started:\n{serverproc.read_log(log)}") from None
    return code, serverproc.read_log(log)


def one_line_error(out: str, named: str) -> str:
    """The error line, after checking it is the only thing said (besides the --help hint)
    and names `named`."""
    lines = [line for line in out.splitlines() if line and not line.startswith("Run '")]
    assert "Traceback" not in out, out
    assert len(lines) == 1, out
    assert f"error: {named}" in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    """A plain file: nothing can be made under it, not even by root."""
    path = tmp_path / "plain-file"
    path.write_text("x")
    return path


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--store", "sqlite:///{file}/sub/x.db"], {}, "--store: cannot open"),
    (["--data-dir", "{file}/sub"], {}, "--data-dir: "),
    (["--store", "redis://127.0.0.1:notaport/0"], {}, "--store: cannot open"),
    (["--broker", "redis://127.0.0.1:notaport/0"], {}, "--broker: cannot open"),
    (["--broker", "amqp://x"], {}, "--broker: unsupported URL"),
    (["--store", "postgres://x"], {}, "--store: not a sqlite URL"),
    (["--quota", "promo=lots"], {}, "--quota: bad quota"),
    (["--quota", "x"], {}, "--quota: bad quota"),
    ([], {"WSAPP_STORE": "sqlite:///{file}/x.db"}, "WSAPP_STORE: cannot open"),
    (["--workers", "2"], {}, "--workers 2 needs a broker all workers share"),
], ids=["store-path", "data-dir", "store-port", "broker-port", "broker-scheme",
        "store-scheme", "quota-count", "quota-form", "store-env", "workers-memory"])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, a_file, args, env, named):
    args = [a.format(file=a_file) for a in args]
    env = {k: v.format(file=a_file) for k, v in env.items()}
    code, out = run(tmp_path, *args, env=env)
    assert code == 2, out
    one_line_error(out, named)


@pytest.mark.parametrize(("env", "says"), [
    ({"WSAPP_STORE": "sqlite:///{file}/x.db"}, "wsapp: store: cannot open sqlite:///"),
    ({"WSAPP_QUOTA": "promo=lots"}, "wsapp: WSAPP_QUOTA: bad quota"),
], ids=["store", "quota"])
def test_gunicorn_stops_at_a_bad_setting_with_one_line(tmp_path, a_file, env, says):
    pytest.importorskip("gunicorn")
    env = {k: v.format(file=a_file) for k, v in env.items()}
    code, out = run(tmp_path, env=env, argv=[
        sys.executable, "-m", "gunicorn", "-k", "wsapp.gunicorn.Worker", "-w", "1", "-b",
        f"127.0.0.1:{free_port()}", "--no-control-socket", "wsapp:create_app()"])
    assert code != 0, out
    assert [line for line in out.splitlines() if says in line], out
    assert "Traceback" not in out and "Booting worker" in out, out
    assert out.count("Booting worker") == 1, out  # stopped, not restarted in a loop


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_an_unreachable_redis_is_said_at_start_and_healthz_answers_503(start_server,
                                                                          tmp_path):
    """Decided: the server starts (it serves its own connections, and Redis may be on its
    way up), says so once at start, and /healthz answers 503 with each engine's state until
    Redis is back; then 200."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0?prefix=startdown"
    server = start_server("--store", url, "--broker", url)
    warnings = [line for line in server.log().splitlines() if " unreachable (" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], server.log()
    status, body = healthz(server.port)
    assert status == 503 and body["status"] == "degraded", body
    assert {kind: e["state"] for kind, e in body["engines"].items()} == {
        "store": "down", "broker": "down", "presence": "down"}, body
    redis = RedisServer(tmp_path / "redis").start(port=port)
    try:
        deadline = time.monotonic() + 30
        while healthz(server.port)[0] != 200:
            assert time.monotonic() < deadline, healthz(server.port)
            time.sleep(0.2)
        body = healthz(server.port)[1]
        assert body["status"] == "ok" and all(e["state"] == "up"
                                              for e in body["engines"].values()), body
    finally:
        redis.stop()
    assert "Traceback" not in server.log()
