"""gunicorn with `-k wsapp.gunicorn.Worker`, run for real: echo, the app protocol across its
workers through Redis, and graceful shutdown (1001 to every WebSocket on SIGTERM)."""

from __future__ import annotations

import signal
import sys
import time

import pytest
import serverproc
import websocket
from realtime.helpers import Closed

from .conftest import API_KEY, SECRET

pytest.importorskip("gunicorn", reason="gunicorn is in requirements.txt")


def test_gunicorn_workers_serve_websockets_across_workers_and_stop_gracefully(cluster):
    server = cluster.add(
        argv=[sys.executable, "-m", "gunicorn", "-k", "wsapp.gunicorn.Worker", "-w", "2",
              "--worker-connections", "2000", "-b", "127.0.0.1:{port}",
              "--graceful-timeout", "20", "--no-control-socket", "wsapp:create_app()"],
        env={"WSAPP_BROKER": cluster.url, "WSAPP_STORE": cluster.url, "WSAPP_SECRET": SECRET,
             "WSAPP_API_KEY": API_KEY, "WSAPP_PING_INTERVAL": "60",
             "WSAPP_DATA_DIR": str(cluster.base / "gdata"), "WSAPP_LOG_LEVEL": "INFO"})
    # the echo route, through wsapp's handler
    echo = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws/echo", timeout=10)
    echo.send("hello")
    assert echo.recv() == "hello"
    echo.close()
    # connections land on both workers (ids start with a per-process prefix)
    by_worker: dict[str, object] = {}
    deadline = time.monotonic() + 30
    n = 0
    while len(by_worker) < 2:
        assert time.monotonic() < deadline and n < 80, "every connection hit one worker"
        c = server.connect(f"g{n}")
        n += 1
        by_worker.setdefault(c.welcome["conn"][:8], c)
    one, two = by_worker.values()
    for c in (one, two):
        c.ok("subscribe", channel="room:g")
    one.ok("publish", channel="room:g", data={"via": "gunicorn"})
    for c in (one, two):
        got = c.wait_for(lambda f: f.get("op") == "message")
        assert got["data"] == {"via": "gunicorn"}
    # presence is global across the workers too
    assert len(two.ok("presence", channel="room:g")["members"]) == 2
    # SIGTERM: gunicorn's graceful stop; wsapp closes each WebSocket with 1001 at once
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for c in (one, two):
        with pytest.raises(Closed) as closed:
            while True:
                c.recv(15)
        assert closed.value.code == 1001, closed.value
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 15  # not gunicorn's 20 s graceful timeout
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "for shutdown" in log


def test_gunicorn_with_several_workers_refuses_a_memory_broker(tmp_path):
    """Two workers on a memory broker would split the users between them: gunicorn stops,
    saying why, instead of serving half-deaf workers."""
    log = tmp_path / "gunicorn.log"
    proc = serverproc.spawn(
        [sys.executable, "-m", "gunicorn", "-k", "wsapp.gunicorn.Worker", "-w", "2", "-b",
         f"127.0.0.1:{serverproc.free_port()}", "--no-control-socket", "wsapp:create_app()"],
        log, env={"WSAPP_DATA_DIR": str(tmp_path / "data")})
    try:
        assert proc.wait(60) != 0
    finally:
        serverproc.stop(proc)
    text = serverproc.read_log(log)
    assert "2 workers need a broker they share" in text, text[-3000:]
