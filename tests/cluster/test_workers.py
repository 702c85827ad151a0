"""`serve.py --workers N`: one port, N supervised processes sharing Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from realtime.helpers import Closed
from serverproc import ROOT, SERVE, wait_children


def worker_of(client) -> str:
    """Which process serves a connection: connection ids start with a per-process prefix."""
    return client.welcome["conn"][:8]


def test_workers_refuse_the_memory_broker(tmp_path):
    result = subprocess.run([sys.executable, str(SERVE), "--workers", "2", "--port", "0",
                             "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "--workers 2 needs a broker" in result.stderr and "redis://" in result.stderr


def test_workers_refuse_a_sqlite_store(tmp_path, redis_server):
    result = subprocess.run([sys.executable, str(SERVE), "--workers", "2", "--port", "0",
                             "--broker", redis_server.url("x"), "--store",
                             f"sqlite:///{tmp_path}/x.db"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "store in Redis" in result.stderr


def test_workers_share_one_port_restart_after_a_crash_and_stop_gracefully(cluster):
    # --store left unset: the workers use the broker's Redis for it
    server = cluster.add("--workers", "2", "--broker", cluster.url, "--secret", "s" * 32,
                         "--log-level", "INFO", "--ping-interval", "60", plain=True)
    master = server.proc.pid
    first = wait_children(master, 2)
    server.wait_for_log(r"(?s)listening on.*listening on", 30)
    # connections spread over both workers (the kernel balances SO_REUSEPORT sockets)
    clients = [server.connect(f"u{i}") for i in range(24)]
    by_worker: dict[str, list] = {}
    for c in clients:
        by_worker.setdefault(worker_of(c), []).append(c)
    assert len(by_worker) == 2, by_worker.keys()
    one, two = (group[0] for group in by_worker.values())
    for c in (one, two):
        c.ok("subscribe", channel="room:w")
    one.ok("publish", channel="room:w", data="across")
    for c in (one, two):
        assert c.wait_for(lambda f: f.get("op") == "message")["data"] == "across"

    # kill -9 one worker: the master restarts it and the port keeps serving
    victim = first[0]
    subprocess.run(["kill", "-9", str(victim)], check=True)
    server.wait_for_log(rf"worker \d \(pid {victim}\) exited with signal SIGKILL after "
                        r"[\d.]+s; restarting", 20)
    second = wait_children(master, 2)
    assert victim not in second and first[1] in second
    deadline = time.monotonic() + 30
    while True:  # the replacement serves too
        probe = server.connect("probe")
        if worker_of(probe) not in by_worker:
            break
        probe.close()
        assert time.monotonic() < deadline, "the restarted worker never served"

    # SIGTERM to the master: every worker closes its WebSockets with 1001, all exit
    server.proc.send_signal(signal.SIGTERM)
    try:
        while True:
            probe.recv(20)
    except Closed as closed:
        assert closed.code == 1001
    assert server.proc.wait(30) == 0
    for pid in second:
        assert not Path(f"/proc/{pid}").exists() or \
            "zombie" in Path(f"/proc/{pid}/status").read_text()
    server.wait_for_log(r"all workers stopped", 5)
    assert "Traceback" not in server.log()
