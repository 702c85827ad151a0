"""Peer benchmark in one go: stock gevent-websocket vs wsapp vs websockets, printing ratios.

    python bench/echo_bench.py [--quick] [--json FILE]

Each server (bench/apps.py) runs pinned to one CPU, the load client (bench/client.py) on another.
Throughput workloads alternate between the servers in short slices (``--rounds`` of
``--slice`` seconds each, order rotated every round) and report the median slice, so that the
noise of a shared machine hits every server alike.  Idle memory uses a fresh server per server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ("stock", "wsapp", "websockets")
CLIENT_LIMIT_PCT = 80.0
WORKLOADS: dict[str, dict[str, Any]] = {
    # poll_delay lets small replies pile up between reads (cheap client); big ones need none
    "echo32": {"size": 32, "binary": False, "conns": 8, "window": 256, "poll_delay": 0.0005},
    "echo64k": {"size": 65536, "binary": True, "conns": 8, "window": 8, "poll_delay": 0.0},
}
TARGETS = {
    "echo32": "wsapp >= 2x stock msg/s",
    "echo64k": "wsapp >= 1x websockets MB/s",
    "idle": "wsapp <= 12 kB/conn",
}


# --- machine and processes ------------------------------------------------------------------


VERSIONED = ("gevent", "greenlet", "gevent-websocket", "flask", "werkzeug", "websockets")


def machine_info(packages: tuple[str, ...] = VERSIONED) -> dict[str, Any]:
    """Date, CPU model, cores and the versions of everything under test."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    commit = None
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "wsapp"], cwd=ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
        if dirty:
            commit += "+uncommitted wsapp/ changes"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
    }


def pick_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU) from this process's affinity; None when there is only one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def importable(server: str) -> str | None:
    """None if ``server``'s implementation imports, else a one-line reason."""
    mod = {"stock": "geventwebsocket.handler", "wsapp": "wsapp.websocket.handler",
           "websockets": "websockets.asyncio.server"}[server]
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {mod}; {mod}.__name__"
    if server == "wsapp":
        code += "; import wsapp.handler; wsapp.handler.WebSocketHandler"  # the old path too
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One bench/apps.py process pinned to a CPU."""

    def __init__(self, kind: str, cpu: int | None, workdir: str, tracemalloc: bool = False,
                 app: str = "echo"):
        self.kind = kind
        self.port = free_port()
        stats = os.path.join(workdir, f"{kind}-{self.port}.stats")
        self.stats_file = stats if tracemalloc else None
        self.err_path = os.path.join(workdir, f"{kind}-{self.port}.err")
        cmd = [sys.executable, str(HERE / "apps.py"), kind, "--port", str(self.port),
               "--app", app]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        if tracemalloc:
            cmd += ["--tracemalloc", "1", "--stats-file", str(self.stats_file)]
        self._err = open(self.err_path, "w")  # closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._err)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until the port accepts connections; raise with the server's stderr if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not start: {self.stderr_tail()}")

    def stderr_tail(self, n: int = 3) -> str:
        """Last lines of the server's stderr."""
        self._err.flush()
        with open(self.err_path) as fh:
            return " | ".join(fh.read().strip().splitlines()[-n:])

    def stop(self) -> None:
        """Terminate this server (only this PID) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()


@contextlib.contextmanager
def servers(kinds: list[str], cpu: int | None, workdir: str, tracemalloc: bool = False,
            app: str = "echo") -> Iterator[dict[str, Server | str]]:
    """Start servers; yields kind -> Server, or kind -> error string for one that failed."""
    started: dict[str, Server | str] = {}
    try:
        for kind in kinds:
            srv = Server(kind, cpu, workdir, tracemalloc, app)
            started[kind] = srv
            try:
                srv.wait_ready()
            except RuntimeError as exc:
                srv.stop()
                started[kind] = str(exc)
        yield started
    finally:
        for srv in started.values():
            if isinstance(srv, Server):
                srv.stop()


def run_client(args: list[str], cpu: int | None, timeout: float) -> dict[str, Any]:
    """Run bench/client.py with ``args``; its JSON result, or {"ok": False, "error": ...}."""
    cmd = [sys.executable, str(HERE / "client.py"), *args]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"client timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"ok": False, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- workloads ------------------------------------------------------------------------------


def throughput(kinds: list[str], cfg: argparse.Namespace, cpus: tuple[int | None, int | None],
               workdir: str, out: dict[str, dict[str, Any]]) -> None:
    """Both echo workloads, servers interleaved slice by slice, rotated each round."""
    with servers(kinds, cpus[0], workdir) as started:
        live = [k for k in kinds if isinstance(started[k], Server)]
        for kind in kinds:
            if not isinstance(started[kind], Server):
                out[kind]["error"] = started[kind]
        for name, wl in WORKLOADS.items():
            for rnd in range(cfg.rounds):
                order = live[rnd % len(live):] + live[: rnd % len(live)] if live else []
                for kind in order:
                    srv = started[kind]
                    assert isinstance(srv, Server)
                    args = ["echo", "--port", str(srv.port), "--server-pid", str(srv.pid),
                            "--size", str(wl["size"]), "--conns", str(wl["conns"]),
                            "--window", str(wl["window"]), "--duration", str(cfg.slice),
                            "--warmup", str(cfg.warmup), "--poll-delay", str(wl["poll_delay"])]
                    if wl["binary"]:
                        args.append("--binary")
                    res = run_client(args, cpus[1], timeout=cfg.slice + cfg.warmup + 90)
                    out[kind].setdefault(name, []).append(res)
                    _progress(f"{name} round {rnd + 1}/{cfg.rounds} {kind}: {_brief(res)}")
                    if srv.proc.poll() is not None:
                        _progress(f"  {kind} server died: {srv.stderr_tail()}")
                        live.remove(kind)
                        out[kind]["error"] = "server died: " + srv.stderr_tail()


def idle(kinds: list[str], cfg: argparse.Namespace, cpus: tuple[int | None, int | None],
         workdir: str, out: dict[str, dict[str, Any]], traced: bool) -> None:
    """Idle-connection memory with a fresh server each (tracemalloc on when ``traced``)."""
    key = "idle_traced" if traced else "idle"
    for kind in kinds:
        with servers([kind], cpus[0], workdir, tracemalloc=traced) as started:
            srv = started[kind]
            if not isinstance(srv, Server):
                out[kind].setdefault("error", srv)
                continue
            count = cfg.traced_conns if traced else cfg.idle_conns
            args = ["idle", "--port", str(srv.port), "--server-pid", str(srv.pid),
                    "--count", str(count)]
            if traced:
                args += ["--stats-file", str(srv.stats_file)]
            res = run_client(args, cpus[1], timeout=300)
            out[kind][key] = res
            _progress(f"{key} {kind}: {_brief(res)}")


def _brief(res: dict[str, Any]) -> str:
    if not res.get("ok"):
        return f"FAILED ({res.get('error') or res})"
    if "msg_per_s" in res:
        return (f"{res['msg_per_s']:,.0f} msg/s {res['mb_per_s']:,.1f} MB/s "
                f"client {res['client_cpu_pct']:.0f}% server {res['server_cpu_pct']:.0f}%")
    per = res.get("traced_bytes_per_conn") or res.get("bytes_per_conn") or 0
    return f"{res['opened']} open, {per / 1000:.1f} kB/conn, {res['handshakes_per_s']:.0f} hs/s"


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


# --- summary --------------------------------------------------------------------------------


def summarize(out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per server: median rates over good slices, CPU figures, memory per connection."""
    summary: dict[str, dict[str, Any]] = {}
    for kind, runs in out.items():
        s: dict[str, Any] = {}
        for name in WORKLOADS:
            slices = runs.get(name, [])
            good = [r for r in slices if r.get("ok")]
            if not slices:
                continue
            if len(good) < len(slices):
                s[f"{name}_failed_slices"] = len(slices) - len(good)
            if not good or len(good) < len(slices):
                s[name] = None  # a broken server must not score
                continue
            s[name] = {
                "msg_per_s": statistics.median(r["msg_per_s"] for r in good),
                "mb_per_s": statistics.median(r["mb_per_s"] for r in good),
                "msg_per_cpu_s": statistics.median(
                    r["msg_per_s"] * 100 / r["server_cpu_pct"] for r in good
                    if r.get("server_cpu_pct")
                ) if any(r.get("server_cpu_pct") for r in good) else None,
                "min_msg_per_s": min(r["msg_per_s"] for r in good),
                "best_msg_per_s": max(r["msg_per_s"] for r in good),
                "best_mb_per_s": max(r["mb_per_s"] for r in good),
                "client_cpu_max_pct": max(r["client_cpu_pct"] for r in good),
                "server_cpu_median_pct": statistics.median(
                    r["server_cpu_pct"] or 0 for r in good),
                "slices": len(good),
            }
        for key, field in (("idle", "bytes_per_conn"), ("idle_traced", "traced_bytes_per_conn")):
            res = runs.get(key)
            if res is None:
                continue
            s[key] = res.get(field) if res.get("ok") else None
        summary[kind] = s
    return summary


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """wsapp/stock and wsapp/websockets for every metric both sides have."""
    def val(kind: str, metric: str) -> float | None:
        s = summary.get(kind, {})
        if metric in ("idle", "idle_traced"):
            return s.get(metric)
        name, field = metric.split(":")
        return (s.get(name) or {}).get(field)

    out: dict[str, float | None] = {}
    for metric in ("echo32:best_msg_per_s", "echo32:msg_per_s", "echo32:msg_per_cpu_s",
                   "echo64k:best_mb_per_s", "echo64k:mb_per_s", "echo64k:msg_per_cpu_s",
                   "idle", "idle_traced"):
        for other in ("stock", "websockets"):
            a, b = val("wsapp", metric), val(other, metric)
            out[f"{metric}/wsapp_vs_{other}"] = a / b if a and b else None
    return out


def targets(summary: dict[str, dict[str, Any]], rat: dict[str, float | None]
            ) -> dict[str, bool | None]:
    """Pass/fail of each target from the issue; None when wsapp was not measured."""
    def at_least(key: str, bound: float) -> bool | None:
        r = rat.get(key)
        return None if r is None else r >= bound

    mem = summary.get("wsapp", {}).get("idle")
    return {
        "echo32": at_least("echo32:best_msg_per_s/wsapp_vs_stock", 2.0),
        "echo32_per_cpu": at_least("echo32:msg_per_cpu_s/wsapp_vs_stock", 2.0),
        "echo64k": at_least("echo64k:best_mb_per_s/wsapp_vs_websockets", 1.0),
        "echo64k_per_cpu": at_least("echo64k:msg_per_cpu_s/wsapp_vs_websockets", 1.0),
        "idle": None if mem is None else mem <= 12000,
    }


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def render(meta: dict[str, Any], cfg: dict[str, Any], summary: dict[str, dict[str, Any]],
           rat: dict[str, float | None], tgt: dict[str, bool | None],
           notes: dict[str, str]) -> str:
    """The human-readable report (header, table, client-bottleneck check)."""
    v = meta["versions"]
    lines = [
        f"wsapp echo benchmark - {meta['date']}",
        f"machine: {meta['cpu_model']}, {meta['cores']} cores, Linux {meta['kernel']}; "
        f"server on cpu {cfg['server_cpu']}, client on cpu {cfg['client_cpu']}",
        f"python {meta['python']}, gevent {v['gevent']}, greenlet {v['greenlet']}, "
        f"gevent-websocket {v['gevent-websocket']}, flask {v['flask']}, "
        f"websockets {v['websockets']}, wsapp commit {meta['commit']}",
        f"throughput: {cfg['rounds']} interleaved slices of {cfg['slice']:g} s per server "
        f"(best, median, and median per CPU-second the server got); "
        f"idle: {cfg['idle_conns']:,} connections",
        "",
    ]

    def cell(kind: str, name: str, field: str, spec: str, scale: float = 1.0) -> str:
        s = summary.get(kind)
        if s is None:
            return "n/a"
        if name in ("idle", "idle_traced"):
            x = s.get(name)
        else:
            if s.get(name) is None and f"{name}_failed_slices" in s:
                return "FAIL"
            x = (s.get(name) or {}).get(field)
        return _fmt(None if x is None else x * scale, spec)

    def ratio(metric: str, other: str) -> str:
        x = rat.get(f"{metric}/wsapp_vs_{other}")
        return "n/a" if x is None else f"{x:.2f}x"

    def verdict(key: str) -> str:
        return {True: "PASS", False: "MISS", None: "-"}[tgt[key]]

    rows = [
        ("32 B echo msg/s, best", "echo32", "best_msg_per_s", ",.0f", 1.0,
         "echo32:best_msg_per_s", f"{TARGETS['echo32']}: {verdict('echo32')}"),
        ("  median slice", "echo32", "msg_per_s", ",.0f", 1.0, "echo32:msg_per_s", ""),
        ("  per server CPU-s", "echo32", "msg_per_cpu_s", ",.0f", 1.0,
         "echo32:msg_per_cpu_s", f"same, per CPU-s: {verdict('echo32_per_cpu')}"),
        ("64 KiB echo MB/s, best", "echo64k", "best_mb_per_s", ",.1f", 1.0,
         "echo64k:best_mb_per_s", f"{TARGETS['echo64k']}: {verdict('echo64k')}"),
        ("  median slice", "echo64k", "mb_per_s", ",.1f", 1.0, "echo64k:mb_per_s", ""),
        ("  per server CPU-s", "echo64k", "msg_per_cpu_s", ",.1f", 65536 / 1e6,
         "echo64k:msg_per_cpu_s", f"same, per CPU-s: {verdict('echo64k_per_cpu')}"),
        (f"idle kB/conn, RSS ({cfg['idle_conns'] // 1000}k)", "idle", "", ",.1f", 1e-3, "idle",
         f"{TARGETS['idle']}: {verdict('idle')}"),
        (f"  Python heap ({cfg['traced_conns'] // 1000}k, traced)", "idle_traced", "", ",.1f",
         1e-3, "idle_traced", ""),
    ]
    head = (f"{'workload':<28}{'stock':>11}{'wsapp':>11}{'websockets':>12}"
            f"{'wsapp/stock':>13}{'wsapp/wsk':>11}  target")
    lines += [head, "-" * len(head)]
    for label, name, field, spec, scale, metric, target in rows:
        if not any(name in summary.get(k, {}) for k in SERVERS):
            continue
        lines.append(
            f"{label:<28}{cell('stock', name, field, spec, scale):>11}"
            f"{cell('wsapp', name, field, spec, scale):>11}"
            f"{cell('websockets', name, field, spec, scale):>12}"
            f"{ratio(metric, 'stock'):>13}{ratio(metric, 'websockets'):>11}  {target}"
        )
    lines.append("")
    lines.append("client CPU (max over slices) / server CPU (median), % of one core:")
    worst = 0.0
    for kind in SERVERS:
        s = summary.get(kind)
        if not s:
            continue
        parts = []
        for name in WORKLOADS:
            w = s.get(name)
            if w:
                worst = max(worst, w["client_cpu_max_pct"])
                parts.append(f"{name} client {w['client_cpu_max_pct']:.0f}% / "
                             f"server {w['server_cpu_median_pct']:.0f}%")
        lines.append(f"  {kind:<11} " + ("; ".join(parts) or "no throughput data"))
    verdict_line = (
        f"client was NOT the bottleneck (max {worst:.0f}% < {CLIENT_LIMIT_PCT:.0f}% of its core)"
        if worst < CLIENT_LIMIT_PCT else
        f"WARNING: client reached {worst:.0f}% of its core - results may be client-bound"
    )
    lines.append("  " + verdict_line)
    starved = [
        f"{k} {n} {w['server_cpu_median_pct']:.0f}%" for k in SERVERS for n in WORKLOADS
        if (w := (summary.get(k) or {}).get(n)) and w["server_cpu_median_pct"] < 90
    ]
    return "\n".join(lines + busy_lines(starved, notes))


def busy_lines(starved: list[str], notes: dict[str, str]) -> list[str]:
    """The summary's closing lines: a warning naming the servers that got under 90% of their
    core (a busy machine: absolute rates are then low, per-CPU-second figures still hold),
    then one note a server."""
    lines = []
    if starved:
        lines.append("  WARNING: a server got < 90% of its core (" + ", ".join(starved) + "): the "
                     "machine is busy; trust the per-CPU-s rows and ratios over absolute rates")
    return lines + [f"note: {kind}: {note}" for kind, note in notes.items()]


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run every workload against every available server; print the table, optionally JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 slice of 1 s per workload, 1,000 idle conns, no tracemalloc")
    ap.add_argument("--json", metavar="FILE", help="also write machine-readable results here")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated subset of stock,wsapp,websockets")
    ap.add_argument("--rounds", type=int, default=None, help="slices per server per workload")
    ap.add_argument("--slice", type=float, default=1.0, help="seconds measured per slice")
    ap.add_argument("--warmup", type=float, default=0.3, help="seconds before each slice counts")
    ap.add_argument("--idle-conns", type=int, default=None, help="default 10,000 (quick: 1,000)")
    ap.add_argument("--traced-conns", type=int, default=2000,
                    help="connections for the tracemalloc run (tracing makes handshakes slow)")
    ap.add_argument("--tracemalloc", choices=("on", "off"), default=None,
                    help="extra idle run per server with tracemalloc (default: on unless --quick)")
    cfg = ap.parse_args(argv)
    cfg.rounds = cfg.rounds or (1 if cfg.quick else 5)
    cfg.idle_conns = cfg.idle_conns or (1000 if cfg.quick else 10000)
    traced = (cfg.tracemalloc or ("off" if cfg.quick else "on")) == "on"

    kinds = [k.strip() for k in cfg.servers.split(",") if k.strip()]
    bad = [k for k in kinds if k not in SERVERS]
    if bad:
        ap.error(f"unknown server(s): {bad}")
    meta = machine_info()
    cpus = pick_cpus()
    if cpus[1] is not None:
        os.sched_setaffinity(0, {cpus[1]})  # keep this orchestrator off the server's core
    notes: dict[str, str] = {}
    for kind in list(kinds):
        reason = importable(kind)
        if reason:
            notes[kind] = f"n/a - not importable ({reason})"
            kinds.remove(kind)
    if cpus[0] is None:
        notes["cpus"] = "fewer than 2 CPUs: server and client share one, ratios only"
    _progress(f"servers: {', '.join(kinds) or 'none'}; cpus server={cpus[0]} client={cpus[1]}")

    out: dict[str, dict[str, Any]] = {k: {} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="echo_bench-") as workdir:
        if kinds:
            throughput(kinds, cfg, cpus, workdir, out)
            idle(kinds, cfg, cpus, workdir, out, traced=False)
            if traced:
                idle(kinds, cfg, cpus, workdir, out, traced=True)
    for kind, runs in out.items():
        if "error" in runs:
            notes[kind] = runs["error"]
    summary = summarize(out)
    rat = ratios(summary)
    tgt = targets(summary, rat)
    conf = {"rounds": cfg.rounds, "slice": cfg.slice, "warmup": cfg.warmup,
            "idle_conns": cfg.idle_conns, "tracemalloc": traced, "traced_conns": cfg.traced_conns,
            "quick": cfg.quick,
            "server_cpu": cpus[0], "client_cpu": cpus[1], "workloads": WORKLOADS}
    print(render(meta, conf, summary, rat, tgt, notes))
    if cfg.json:
        with open(cfg.json, "w") as fh:
            json.dump({"meta": meta, "config": conf, "summary": summary, "ratios": rat,
                       "targets": tgt, "notes": notes, "runs": out}, fh, indent=2)
    measured = [k for k in kinds if summary.get(k)]
    failed = any(
        summary[k].get(f"{n}_failed_slices") for k in measured for n in WORKLOADS
    ) or any(
        not (out[k].get(key) or {}).get("ok", True) for k in kinds for key in ("idle",)
    )
    return 1 if failed or not measured else 0


if __name__ == "__main__":
    sys.exit(main())
