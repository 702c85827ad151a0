"""Each benchmark in bench/ runs in its smallest form and reports every figure README quotes.

Benchmarks are scripts people run by hand now and then; without this they would rot between
runs (a renamed option, a server that no longer starts) and README's tables could not be
redone. Figures are not judged here — a shared CI machine is too noisy for that — only that
each is there and is a real, positive measurement.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run bench/`script` with `args` from its own folder (its modules import each other)."""
    done = subprocess.run([sys.executable, script, *args], cwd=BENCH, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_echo_bench(tmp_path: Path) -> None:
    """The echo and idle-memory table: wsapp against gevent-websocket's handler."""
    out = tmp_path / "echo.json"
    done = run("echo_bench.py", "--quick", "--servers", "stock,wsapp", "--json", str(out))
    data = json.loads(out.read_text())
    for key in ("echo32:msg_per_s/wsapp_vs_stock", "echo32:msg_per_cpu_s/wsapp_vs_stock",
                "echo64k:mb_per_s/wsapp_vs_stock", "idle/wsapp_vs_stock"):
        assert positive(data["ratios"][key]), (key, data["ratios"])
    assert set(data["targets"]) >= {"echo32", "idle"}, data["targets"]
    assert "wsapp_vs_stock" in done.stdout or "wsapp" in done.stdout


def test_socketio_bench(tmp_path: Path) -> None:
    """Flask-SocketIO on the stock handler and on wsapp's, same app, same clients."""
    out = tmp_path / "sio.json"
    run("socketio_bench.py", "--quick", "--json", str(out))
    ratios = json.loads(out.read_text())["ratios"]
    for key in ("acks_per_s", "acks_per_cpu_s", "last_ms", "server_cpu_ms_per_broadcast"):
        assert positive(ratios[key]), (key, ratios)


def test_feed_bench() -> None:
    """Pushes from Redis Streams, RabbitMQ and PostgreSQL against POST /api/push."""
    done = run("feed_bench.py", "--quick", "--messages", "500", "--json")
    data = json.loads(done.stdout[done.stdout.index("{"):])
    assert set(data["ratio_to_api"]) == {"redis", "amqp", "postgresql"}, data
    assert all(positive(v) for v in data["per_second"].values()), data


def test_cluster_bench_echo(tmp_path: Path) -> None:
    """Echo on two processes and Redis against one process."""
    out = tmp_path / "cluster.json"
    run("cluster_bench.py", "echo", "--duration", "1", "--repeat", "1", "--procs", "2",
        "--echo-conns", "20", "--out", str(out))
    echo = json.loads(out.read_text())["echo"]
    rows = {k: v for k, v in echo.items() if isinstance(v, dict)}
    assert len(rows) == 2, echo
    for name, row in rows.items():
        assert row["failed"] == 0 and positive(row["best_msg_per_s"]), (name, row)
    assert positive(echo["speedup_best"]), echo


def test_cluster_bench_broadcast(tmp_path: Path) -> None:
    """A room spread over two processes: every round reaches every connection."""
    out = tmp_path / "cluster.json"
    run("cluster_bench.py", "broadcast", "--procs", "2", "--conns", "200", "--count", "5",
        "--out", str(out))
    part = json.loads(out.read_text())["broadcast"]
    assert part["connections"] == 200 and part["processes"] == 2, part
    assert part["undelivered"] == 0, part
    assert positive(part["last_delivery_ms_p99"]), part


def test_hostile_bench(tmp_path: Path) -> None:
    """A well-behaved client's round trips under each attack, as ratios to no attack."""
    out = tmp_path / "hostile.json"
    done = run("hostile.py", "--quick", "--json", str(out), timeout=120)
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"none", "plain", "compressed", "rate", "stalled", "trickle"}
    for name, ratios in data["ratios"].items():
        for key in ("ws_ping_p50_ms", "ws_ping_p99_ms", "healthz_p50_ms", "healthz_p99_ms"):
            assert positive(ratios[key]), (name, key, ratios)
    for name, result in data["results"].items():
        assert result["ws_ping"]["p99_ms"] < 1000 and result["healthz"]["p99_ms"] < 1000, \
            (name, result)  # the promise the fairness tests make, here under each attack
    assert "compressed" in done.stdout
