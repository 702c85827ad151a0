"""Fairness under attack: a well-behaved client's round trips while one client attacks.

    python bench/hostile.py [--quick] [--json FILE]

Starts serve.py (demo mode, default limits) and measures a well-behaved client's round trip
— the `ping` op over its own /ws connection, and GET /healthz on a fresh connection — with
no attack, then during each attack of issue 12 (bench/attacks.py):

  plain       one connection sending 1 MiB JSON frames as fast as it can (reconnecting
              whenever it is closed)
  compressed  the same with permessage-deflate: ~1 KB frames that inflate to 1 MiB of JSON
  rate        small valid requests, far over the rate limit
  stalled     8 connections of one user replaying a long history without ever reading,
              while live messages for that channel keep coming
  trickle     200 connections sending their upgrade request a byte at a time

It reports p50/p99 of each round trip, their ratio to the no-attack figures, and the
server's RSS growth during each attack. --quick (a smoke run, < 30 s) takes fewer samples
and a smaller history.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import attacks  # noqa: E402  (bench modules import each other, run from bench/)
from client import proc_rss_kb  # noqa: E402
from echo_bench import free_port, machine_info  # noqa: E402

SCENARIOS = ("none", "plain", "compressed", "rate", "stalled", "trickle")
CHANNEL = "room:history"


@contextlib.contextmanager
def serve(data_dir: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """serve.py on a free port (its log in data_dir), stopped by PID at the end."""
    port = free_port()
    log = open(Path(data_dir) / "server.log", "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")}
    env.update(PYTHONPATH=str(ROOT), WSAPP_DATA_DIR=data_dir)
    proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "WARNING"],
                            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"serve.py exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                attacks.http_json(port, "GET", "/healthz", timeout=1)
                break
            time.sleep(0.1)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def attack(name: str, port: int, token: str, seconds: float) -> contextlib.AbstractContextManager:
    """The context in which scenario `name` runs."""
    if name in attacks.KINDS:
        return attacks.FloodLoop(port, name, seconds)
    if name == "stalled":
        return stalled(port, token, seconds)
    if name == "trickle":
        return attacks.Trickle(port, seconds=seconds)
    return contextlib.nullcontext()


@contextlib.contextmanager
def stalled(port: int, token: str, seconds: float) -> Iterator[None]:
    with attacks.LivePublisher(port, CHANNEL, limit=int(seconds * 100)):
        replays = attacks.StalledReplays(port, token, CHANNEL, 8)
        try:
            yield
        finally:
            replays.close()


def run_scenario(name: str, port: int, pid: int, token: str, samples: int) -> dict[str, Any]:
    """Round trips and RSS during one scenario."""
    before = proc_rss_kb(pid)
    peak = before
    with attack(name, port, token, seconds=60):
        time.sleep(0.5 if name != "none" else 0)  # the attack is on
        probe = attacks.Probe(port)
        got: dict[str, list[float]] = {"ws_ping": [], "healthz": []}
        try:
            for _ in range(samples):
                got["ws_ping"].append(probe.ws_ping())
                got["healthz"].append(probe.healthz())
                peak = max(peak, proc_rss_kb(pid))
                time.sleep(0.02)
        finally:
            probe.close()
    time.sleep(0.5)  # let the server settle before the next scenario
    return {kind: attacks.percentiles(times) for kind, times in got.items()} | {
        "rss_growth_mib": (peak - before) / 1024, "rss_before_mib": before / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 30 s)")
    parser.add_argument("--samples", type=int, default=0, help="round trips per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    samples = args.samples or (12 if args.quick else 200)
    history = (40, 20_000) if args.quick else (400, 60_000)
    names = [n for n in args.scenarios.split(",") if n]
    unknown = set(names) - set(SCENARIOS)
    if unknown or "none" not in names:
        parser.error(f"--scenarios: from {', '.join(SCENARIOS)}, 'none' included")

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wsapp-hostile-") as data_dir, \
            serve(data_dir) as (port, proc):
        attacks.fill_history(port, CHANNEL, *history)
        status, minted = attacks.http_json(port, "POST", "/api/tokens", {"user": "stuck"})
        if status != 200:
            raise RuntimeError(f"token: {status} {minted}")
        for name in names:
            print(f"  .. {name}", flush=True)
            results[name] = run_scenario(name, port, proc.pid, minted["token"], samples)

    base = results["none"]
    ratios = {name: {f"{kind}_{p}": r[kind][p] / max(base[kind][p], 1e-6)
                     for kind in ("ws_ping", "healthz") for p in ("p50_ms", "p99_ms")}
              for name, r in results.items() if name != "none"}
    info = machine_info(("gevent", "greenlet", "flask", "werkzeug"))
    print(f"wsapp hostile benchmark - {info['date']}")
    print(f"machine: {info['cpu_model']}, {info['cores']} cores; {samples} round trips of "
          "each kind per scenario")
    head = (f"{'scenario':<11} {'ping p50':>9} {'p99':>8} {'healthz p50':>12} {'p99':>8} "
            f"{'ping p50/p99 vs none':>21} {'healthz p50/p99 vs none':>24} {'RSS +MiB':>9}")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        ratio = ratios.get(name)
        ping_ratio = (f"{ratio['ws_ping_p50_ms']:.1f}x / {ratio['ws_ping_p99_ms']:.1f}x"
                      if ratio else "1x")
        hz_ratio = (f"{ratio['healthz_p50_ms']:.1f}x / {ratio['healthz_p99_ms']:.1f}x"
                    if ratio else "1x")
        print(f"{name:<11} {r['ws_ping']['p50_ms']:>7.1f}ms {r['ws_ping']['p99_ms']:>6.1f}ms "
              f"{r['healthz']['p50_ms']:>10.1f}ms {r['healthz']['p99_ms']:>6.1f}ms "
              f"{ping_ratio:>21} {hz_ratio:>24} {r['rss_growth_mib']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "samples": samples,
                                               "results": results, "ratios": ratios},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
