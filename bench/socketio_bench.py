"""Flask-SocketIO on gevent-websocket's handler vs on wsapp's, in one run, printing ratios.

    python bench/socketio_bench.py [--quick] [--json FILE]

Both servers are the same Flask-SocketIO app (bench/apps.py --app socketio, async_mode
"gevent", under gevent.pywsgi.WSGIServer with the handler under test), pinned to one CPU; this
process is the load (bench/sioclient.py: raw Socket.IO over WebSocket) on another. Two
workloads, each interleaving the servers slice by slice with the order rotated every round,
as bench/echo_bench.py does:

* ack: a few connections each keep a window of emit-with-ack ("echo") in flight; every ack
  is checked against what was sent. Reported: acks/s and acks per server CPU-second.
* broadcast: 1,000 connections per server; one emits "shout" and the app broadcasts
  "shouted" to all 1,000. Reported: the time until the last (and the first) of them has
  it, and the server's CPU per broadcast. Every delivery is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from client import proc_cpu_seconds, raise_nofile, self_cpu_seconds
from echo_bench import (
    VERSIONED,
    Server,
    _progress,
    busy_lines,
    importable,
    machine_info,
    pick_cpus,
    servers,
)
from sioclient import Group, SioConn, SioError

KINDS = ("stock", "wsapp")
PACKAGES = (*VERSIONED, "flask-socketio", "python-socketio", "python-engineio")


# --- emit with ack ---------------------------------------------------------------------------


class AckLoad:
    """`conns` connections to one server, each keeping `window` acked emits in flight."""

    def __init__(self, group: Group, window: int) -> None:
        self.group = group
        self.window = window
        self.next_id = 0
        self.outstanding: dict[SioConn, set[int]] = {c: set() for c in group.conns}

    def _emit(self, conn: SioConn) -> None:
        ack_id, self.next_id = self.next_id, self.next_id + 1
        self.outstanding[conn].add(ack_id)
        conn.emit_raw(f'2{ack_id}["echo",{{"n":{ack_id},"s":"0123456789abcdef"}}]')

    def _on_packets(self, conn: SioConn, packets: list[str], refill: bool) -> int:
        """Check the acks among `packets`; send as many new emits; how many acks came."""
        acked = 0
        for packet in packets:
            head, _, body = packet.partition("[")
            if head[:1] != "3":
                raise SioError(f"unexpected packet {packet[:80]!r}")
            ack_id = int(head[1:])
            if json.loads("[" + body) != [{"n": ack_id, "s": "0123456789abcdef"}]:
                raise SioError(f"wrong ack for {ack_id}: {packet[:80]!r}")
            self.outstanding[conn].remove(ack_id)  # KeyError: an ack never asked for
            acked += 1
            if refill:
                self._emit(conn)
        return acked

    def run(self, pid: int, duration: float, warmup: float) -> dict[str, Any]:
        """Warm up, measure `duration` s, then collect every ack still in flight."""
        for conn in self.group.conns:
            for _ in range(self.window):
                self._emit(conn)
            conn.flush()
        t_start = time.monotonic()
        t_warm, t_end = t_start + warmup, t_start + warmup + duration
        total, marks, end = 0, None, None
        error = None
        try:
            while True:
                now = time.monotonic()
                if marks is None and now >= t_warm:
                    marks = (now, total, self_cpu_seconds(), proc_cpu_seconds(pid))
                if end is None and now >= t_end:
                    end = (now, total, self_cpu_seconds(), proc_cpu_seconds(pid))
                    t_drain = now + 10.0
                if end is not None and (now > t_drain or not any(self.outstanding.values())):
                    break
                for conn, packets in self.group.poll(0.2):
                    total += self._on_packets(conn, packets, refill=end is None)
                    conn.flush()
        except (OSError, ValueError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            end = end or (time.monotonic(), total, self_cpu_seconds(), proc_cpu_seconds(pid))
            marks = marks or end
        lost = sum(len(s) for s in self.outstanding.values())
        if error is None and lost:
            error = f"{lost} acks never came"
        wall = end[0] - marks[0]
        acks = end[1] - marks[1]
        server_cpu = end[3] - marks[3]
        return {
            "seconds": round(wall, 3),
            "acks": acks,
            "acks_per_s": acks / wall if wall > 0 else 0.0,
            "acks_per_cpu_s": acks / server_cpu if server_cpu > 0 else None,
            "server_cpu_pct": 100.0 * server_cpu / wall if wall > 0 else None,
            "client_cpu_pct": 100.0 * (end[2] - marks[2]) / wall if wall > 0 else None,
            "error": error,
            "ok": error is None and acks > 0,
        }


def open_groups(started: dict[str, Server], count: int, out: dict[str, dict[str, Any]],
                what: str) -> dict[str, Group]:
    """`count` connections to each server not already failed; a server that refuses them
    gets its error in `out` instead."""
    groups = {}
    for kind, srv in started.items():
        if "error" in out[kind]:
            continue
        group = Group("127.0.0.1", srv.port)
        try:
            took = group.open(count)
        except (OSError, ValueError) as exc:
            out[kind]["error"] = f"cannot connect: {type(exc).__name__}: {exc}"
            group.close()
            continue
        _progress(f"{what}: {count:,} clients on {kind} in {took:.1f} s")
        groups[kind] = group
    return groups


def interleaved(groups: dict[str, Group], live: list[str], rounds: int
                ) -> Iterator[tuple[int, str]]:
    """(round, server) for every slice, the order rotated each round; a server the caller
    removes from `live` gets no more slices. Pings waiting anywhere are answered first."""
    for rnd in range(rounds):
        for kind in live[rnd % len(live):] + live[: rnd % len(live)] if live else []:
            if kind in live:
                for other in live:
                    groups[other].service()
                yield rnd, kind


def ack_workload(started: dict[str, Server], cfg: argparse.Namespace,
                 out: dict[str, dict[str, Any]]) -> None:
    groups = open_groups(started, cfg.ack_conns, out, "ack")
    live = list(groups)
    try:
        for rnd, kind in interleaved(groups, live, cfg.rounds):
            res = AckLoad(groups[kind], cfg.window).run(started[kind].pid, cfg.slice,
                                                       cfg.warmup)
            out[kind].setdefault("ack", []).append(res)
            _progress(f"ack round {rnd + 1}/{cfg.rounds} {kind}: " + (
                f"{res['acks_per_s']:,.0f} acks/s, {res['acks_per_cpu_s'] or 0:,.0f} per "
                f"server CPU-s, client {res['client_cpu_pct']:.0f}%" if res["ok"]
                else f"FAILED ({res['error']})"))
            if not res["ok"]:
                live.remove(kind)
    finally:
        for group in groups.values():
            group.close()


# --- broadcast -------------------------------------------------------------------------------


def one_broadcast(group: Group, seq: int, timeout: float) -> tuple[float, float]:
    """Seconds from the sender's emit until the first and until the last of the group's
    connections has the broadcast; SioError if one misses it or gets it twice."""
    waiting = set(group.conns)
    expected = f'2["shouted",{{"seq":{seq}}}]'
    sender = group.conns[0]
    t0 = time.perf_counter()
    sender.emit_raw(f'2["shout",{{"seq":{seq}}}]')
    sender.flush()
    first = None
    deadline = t0 + timeout
    while waiting:
        if time.perf_counter() > deadline:
            raise SioError(f"{len(waiting)} of {len(group.conns)} never got broadcast {seq}")
        for conn, packets in group.poll(0.2):
            for packet in packets:
                if packet != expected or conn not in waiting:
                    raise SioError(f"unexpected packet {packet[:80]!r} during broadcast {seq}")
                waiting.discard(conn)
            if first is None:
                first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0


def broadcast_workload(started: dict[str, Server], cfg: argparse.Namespace,
                       out: dict[str, dict[str, Any]]) -> None:
    groups = open_groups(started, cfg.fanout, out, "broadcast")
    live = list(groups)
    seq = 0
    try:
        for rnd, kind in interleaved(groups, live, cfg.rounds):
            pid = started[kind].pid
            cpu0, client0 = proc_cpu_seconds(pid), self_cpu_seconds()
            runs = []
            try:
                for _ in range(cfg.broadcasts):
                    seq += 1
                    runs.append(one_broadcast(groups[kind], seq, timeout=30.0))
                    time.sleep(0.05)  # let the server settle between broadcasts
            except (OSError, ValueError) as exc:
                out[kind]["error"] = f"broadcast: {type(exc).__name__}: {exc}"
                live.remove(kind)
                _progress(f"broadcast round {rnd + 1} {kind}: FAILED ({exc})")
                continue
            res = {"first_s": [r[0] for r in runs], "last_s": [r[1] for r in runs],
                   "server_cpu_s_per_broadcast": (proc_cpu_seconds(pid) - cpu0) / len(runs),
                   "client_cpu_s_per_broadcast": (self_cpu_seconds() - client0) / len(runs)}
            out[kind].setdefault("broadcast", []).append(res)
            _progress(f"broadcast round {rnd + 1}/{cfg.rounds} {kind}: last delivery "
                      f"median {statistics.median(res['last_s']) * 1e3:.1f} ms, server "
                      f"{res['server_cpu_s_per_broadcast'] * 1e3:.1f} CPU-ms each")
    finally:
        for group in groups.values():
            group.close()


# --- summary ---------------------------------------------------------------------------------


def summarize(out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per server: medians over the good slices; None where any slice failed."""
    summary: dict[str, dict[str, Any]] = {}
    for kind, runs in out.items():
        s: dict[str, Any] = {}
        slices = runs.get("ack", [])
        if slices and all(r["ok"] for r in slices):
            s["acks_per_s"] = statistics.median(r["acks_per_s"] for r in slices)
            s["best_acks_per_s"] = max(r["acks_per_s"] for r in slices)
            s["acks_per_cpu_s"] = statistics.median(
                r["acks_per_cpu_s"] for r in slices if r["acks_per_cpu_s"])
            s["ack_client_cpu_max_pct"] = max(r["client_cpu_pct"] for r in slices)
            s["ack_server_cpu_median_pct"] = statistics.median(
                r["server_cpu_pct"] for r in slices)
        rounds = runs.get("broadcast", [])
        if rounds and "error" not in runs:
            last = sorted(x for r in rounds for x in r["last_s"])
            s["last_ms"] = statistics.median(last) * 1e3
            s["last_p90_ms"] = last[min(len(last) - 1, int(len(last) * 0.9))] * 1e3
            s["first_ms"] = statistics.median(x for r in rounds for x in r["first_s"]) * 1e3
            s["server_cpu_ms_per_broadcast"] = statistics.median(
                r["server_cpu_s_per_broadcast"] for r in rounds) * 1e3
            s["client_cpu_ms_per_broadcast"] = statistics.median(
                r["client_cpu_s_per_broadcast"] for r in rounds) * 1e3
        summary[kind] = s
    return summary


ROWS = (  # label, metric, format, better when higher
    ("emit-with-ack acks/s (median)", "acks_per_s", ",.0f", True),
    ("  best slice", "best_acks_per_s", ",.0f", True),
    ("  per server CPU-second", "acks_per_cpu_s", ",.0f", True),
    ("broadcast last delivery ms", "last_ms", ",.1f", False),
    ("  p90", "last_p90_ms", ",.1f", False),
    ("  first delivery ms", "first_ms", ",.1f", False),
    ("  server CPU-ms per broadcast", "server_cpu_ms_per_broadcast", ",.1f", False),
)


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """wsapp / stock for each metric (for times: lower is better, so < 1 is a gain)."""
    out: dict[str, float | None] = {}
    for _, metric, _, _ in ROWS:
        a = summary.get("wsapp", {}).get(metric)
        b = summary.get("stock", {}).get(metric)
        out[metric] = a / b if a and b else None
    return out


def render(meta: dict[str, Any], cfg: dict[str, Any], summary: dict[str, dict[str, Any]],
           rat: dict[str, float | None], notes: dict[str, str]) -> str:
    v = meta["versions"]
    lines = [
        f"Flask-SocketIO benchmark - {meta['date']}",
        f"machine: {meta['cpu_model']}, {meta['cores']} cores, Linux {meta['kernel']}; "
        f"servers on cpu {cfg['server_cpu']}, load on cpu {cfg['client_cpu']}",
        f"python {meta['python']}, gevent {v['gevent']}, gevent-websocket "
        f"{v['gevent-websocket']}, flask-socketio {v['flask-socketio']}, python-socketio "
        f"{v['python-socketio']}, python-engineio {v['python-engineio']}, wsapp commit "
        f"{meta['commit']}",
        f"ack: {cfg['rounds']} interleaved slices of {cfg['slice']:g} s per server, "
        f"{cfg['ack_conns']} connections x {cfg['window']} in flight; broadcast: "
        f"{cfg['fanout']:,} clients per server, {cfg['rounds']} rounds of "
        f"{cfg['broadcasts']} broadcasts",
        "",
    ]
    head = f"{'workload':<34}{'stock':>11}{'wsapp':>11}{'wsapp/stock':>13}"
    lines += [head, "-" * len(head)]
    for label, metric, spec, _ in ROWS:
        cells = []
        for kind in KINDS:
            x = summary.get(kind, {}).get(metric)
            cells.append("n/a" if x is None else format(x, spec))
        r = rat.get(metric)
        lines.append(f"{label:<34}{cells[0]:>11}{cells[1]:>11}"
                     f"{'n/a' if r is None else f'{r:.2f}x':>13}")
    lines.append("")
    for kind in KINDS:
        s = summary.get(kind, {})
        if "ack_client_cpu_max_pct" in s:
            lines.append(f"  {kind}: ack load client {s['ack_client_cpu_max_pct']:.0f}% max / "
                         f"server {s['ack_server_cpu_median_pct']:.0f}% median of a core; "
                         f"broadcast client "
                         f"{s.get('client_cpu_ms_per_broadcast', float('nan')):.1f} CPU-ms "
                         f"each")
    clients = [s["ack_client_cpu_max_pct"] for s in summary.values()
               if "ack_client_cpu_max_pct" in s]
    if clients and max(clients) >= 80:
        lines.append(f"  WARNING: the load reached {max(clients):.0f}% of its core: results may "
                     f"be client-bound")
    starved = [f"{k} {s['ack_server_cpu_median_pct']:.0f}%" for k, s in summary.items()
               if s.get("ack_server_cpu_median_pct", 100) < 90]
    return "\n".join(lines + busy_lines(starved, notes))


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 1 s slices, 3 broadcasts")
    ap.add_argument("--json", metavar="FILE", help="also write machine-readable results here")
    ap.add_argument("--servers", default=",".join(KINDS), help="comma-separated stock,wsapp")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (quick: 1)")
    ap.add_argument("--slice", type=float, default=2.0, help="seconds measured per ack slice")
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--ack-conns", type=int, default=8)
    ap.add_argument("--window", type=int, default=64,
                    help="acked emits in flight per connection (fewer leave stock idle "
                         "between delayed ACKs)")
    ap.add_argument("--fanout", type=int, default=1000, help="clients per broadcast")
    ap.add_argument("--broadcasts", type=int, default=None,
                    help="broadcasts per round per server (default 10, quick: 3)")
    cfg = ap.parse_args(argv)
    cfg.rounds = cfg.rounds or (1 if cfg.quick else 5)
    cfg.broadcasts = cfg.broadcasts or (3 if cfg.quick else 10)
    if cfg.quick:
        cfg.slice = min(cfg.slice, 1.0)
    kinds = [k.strip() for k in cfg.servers.split(",") if k.strip()]
    if bad := [k for k in kinds if k not in KINDS]:
        ap.error(f"unknown server(s): {bad}")

    meta = machine_info(PACKAGES)
    cpus = pick_cpus()
    if cpus[1] is not None:
        os.sched_setaffinity(0, {cpus[1]})
    raise_nofile()
    notes: dict[str, str] = {}
    for kind in list(kinds):
        if reason := importable(kind):
            notes[kind] = f"n/a - not importable ({reason})"
            kinds.remove(kind)
    _progress(f"servers: {', '.join(kinds) or 'none'}; cpus server={cpus[0]} "
              f"load={cpus[1]}")
    out: dict[str, dict[str, Any]] = {k: {} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="socketio_bench-") as workdir, \
            servers(kinds, cpus[0], workdir, app="socketio") as started:
        live: dict[str, Server] = {}
        for kind, srv in started.items():
            if isinstance(srv, Server):
                live[kind] = srv
            else:
                out[kind]["error"] = srv
        ack_workload(live, cfg, out)
        broadcast_workload(live, cfg, out)
        for kind, srv in live.items():
            if srv.proc.poll() is not None:
                out[kind]["error"] = "server died: " + srv.stderr_tail()
    for kind, runs in out.items():
        if "error" in runs:
            notes[kind] = runs["error"]
    summary = summarize(out)
    rat = ratios(summary)
    conf = {"rounds": cfg.rounds, "slice": cfg.slice, "warmup": cfg.warmup,
            "ack_conns": cfg.ack_conns, "window": cfg.window, "fanout": cfg.fanout,
            "broadcasts": cfg.broadcasts, "quick": cfg.quick,
            "server_cpu": cpus[0], "client_cpu": cpus[1]}
    print(render(meta, conf, summary, rat, notes))
    if cfg.json:
        with open(cfg.json, "w") as fh:
            json.dump({"meta": meta, "config": conf, "summary": summary, "ratios": rat,
                       "notes": notes, "runs": out}, fh, indent=2)
    return 0 if kinds and not any("error" in out[k] for k in kinds) else 1


if __name__ == "__main__":
    sys.exit(main())
