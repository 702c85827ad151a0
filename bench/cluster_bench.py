"""Cluster benchmark: several wsapp processes + Redis against one process, on one machine.

    python bench/cluster_bench.py all --out bench/cluster_results.json

Three measurements, each printed and written as JSON (loopback only; every process we start
is stopped by its PID at the end):

* echo: /ws/echo message throughput of `serve.py` (one process, memory broker) against
  `serve.py --workers 2 --broker redis://…` (two processes on one SO_REUSEPORT port), driven
  by bench/client.py's pipelined echo client. Best of --repeat runs each.
* broadcast: --conns connections (anonymous, on /ws, subscribed to `sys:bench`) spread over
  --procs server processes sharing Redis; one HTTP publish at a time; per round, the latency
  from the publish to the LAST connection receiving it (and to the median one). p50/p99 over
  --rounds rounds.
* connections: --conns authenticated connections over --procs server processes (one port
  each, so loopback source ports suffice), held open; then Redis's global online-user count
  is checked against it.

Client fleets are separate processes (`_fleet` subcommand) using one selector each, since a
process may hold at most 20,000 descriptors here.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import resource
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "serve.py"
CLIENT = ROOT / "bench" / "client.py"
HOST = "127.0.0.1"
SECRET = "bench-secret-of-at-least-32-bytes-long"
NOFILE = 20000


def raise_nofile() -> None:
    """Lift the soft fd limit to min(hard, 20000) in this process (and its children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_at_start": os.getloadavg()}


# -- processes -----------------------------------------------------------------------------


class Procs:
    """Every process the benchmark starts, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def popen(self, argv: list[str], name: str, **kw: Any) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        kw.setdefault("stdout", log)
        proc = subprocess.Popen(argv, cwd=ROOT, stderr=log, preexec_fn=raise_nofile, **kw)
        log.close()
        self.procs.append(proc)
        return proc

    def redis(self) -> int:
        port = free_port()
        self.popen(["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                    "--appendonly", "no", "--maxclients", "1000"], "redis")
        wait_port(port)
        return port

    def serve(self, port: int, *flags: str, name: str = "serve") -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")}
        proc = self.popen([sys.executable, str(SERVE), "--host", HOST, "--port", str(port),
                           "--data-dir", str(self.workdir / f"data-{port}"),
                           "--log-level", "WARNING", "--secret", SECRET,
                           "--max-connections", "19000", *flags], f"{name}-{port}", env=env)
        wait_http(port)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wait_http(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on {port} not healthy")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(t) for t in (task / "children").read_text().split()]
    return out


# -- echo ------------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of some processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def echo_run(port: int, args: argparse.Namespace, pids: list[int]) -> dict:
    cpu0 = cpu_seconds(pids)
    out = subprocess.run([sys.executable, str(CLIENT), "echo", "--port", str(port),
                          "--conns", str(args.echo_conns), "--window", "64", "--size", "32",
                          "--duration", str(args.duration)], capture_output=True, text=True,
                         timeout=args.duration + 120, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["server_cpu_s"] = cpu_seconds(pids) - cpu0  # the whole run, warmup and drain too
    return res


def bench_echo(procs: Procs, redis_port: int, args: argparse.Namespace) -> dict:
    """/ws/echo msg/s: one process against two workers sharing Redis."""
    results: dict[str, Any] = {}
    url = f"redis://{HOST}:{redis_port}/0?prefix=echo"
    for label, flags in (("1 process", ()),
                         ("2 processes + Redis", ("--workers", "2", "--broker", url))):
        port = free_port()
        proc = procs.serve(port, *flags, name=f"echo{len(results)}")
        if flags:
            time.sleep(2.0)  # both workers up (the first answers /healthz alone)
        pids = children(proc.pid) if flags else [proc.pid]
        runs = [echo_run(port, args, pids) for _ in range(args.repeat)]
        procs.stop(proc)
        rates = sorted(r["msg_per_s"] for r in runs if r["ok"])
        cpu = sum(r["server_cpu_s"] for r in runs)
        wall = sum(r["seconds"] for r in runs) + args.repeat * 0.5
        results[label] = {"best_msg_per_s": round(rates[-1]) if rates else 0,
                          "median_msg_per_s": round(statistics.median(rates)) if rates else 0,
                          "client_cpu_pct": round(runs[-1]["client_cpu_pct"]),
                          "server_cores_busy": round(cpu / wall, 2),
                          "runs": len(runs), "failed": sum(not r["ok"] for r in runs)}
        print(f"echo {label}: {results[label]}", flush=True)
    one, two = (results[k]["best_msg_per_s"] for k in results)
    results["speedup_best"] = round(two / one, 2) if one else None
    return results


# -- fleets of clients ----------------------------------------------------------------------


class Fleet:
    """A `_fleet` subprocess holding many connections; talks JSON lines on stdout."""

    def __init__(self, procs: Procs, port: int, count: int, name: str, *extra: str) -> None:
        self.proc = procs.popen([sys.executable, __file__, "_fleet", "--port", str(port),
                                 "--count", str(count), *extra], name,
                                stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)

    def read(self, timeout: float) -> dict:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise TimeoutError("fleet said nothing in time")
        finally:
            sel.close()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fleet exited {self.proc.poll()}")
        return json.loads(line)

    def tell(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


def publish(conn: http.client.HTTPConnection, channel: str, data: Any) -> None:
    conn.request("POST", "/api/publish", json.dumps({"channel": channel, "data": data}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"publish: HTTP {resp.status}")


def bench_broadcast(procs: Procs, redis_port: int, args: argparse.Namespace) -> dict:
    """Latency of the last delivery of a publish to --conns subscribers over --procs procs."""
    url = f"redis://{HOST}:{redis_port}/0?prefix=bcast"
    ports = [free_port() for _ in range(args.procs)]
    servers = [procs.serve(p, "--broker", url, "--store", url, "--ping-interval", "0",
                           "--max-backlog", str(1 << 20), name="bcast") for p in ports]
    per = args.conns // args.procs
    fleets = [Fleet(procs, p, per, f"fleet-b{i}", "--subscribe", "sys:bench")
              for i, p in enumerate(ports)]
    opened = sum(f.read(600)["ready"] for f in fleets)
    print(f"broadcast: {opened} connections subscribed over {args.procs} processes", flush=True)
    conn = http.client.HTTPConnection(HOST, ports[0], timeout=30)
    last, median, lost = [], [], 0
    for r in range(1, args.rounds + 1):
        for f in fleets:
            f.tell(f"expect {r}")
        t0 = time.monotonic()
        publish(conn, "sys:bench", {"round": r})
        reports = [f.read(60) for f in fleets]
        got = sum(x["got"] for x in reports)
        lost += opened - got
        last.append(max(x["last"] for x in reports) - t0)
        median.append(statistics.median(x["median"] for x in reports) - t0)
        time.sleep(0.2)
    for f in fleets:
        f.tell("quit")
    for f in fleets:
        f.proc.wait(60)
    for s in servers:
        procs.stop(s)
    ms = sorted(x * 1000 for x in last)
    res = {"connections": opened, "processes": args.procs, "rounds": args.rounds,
           "last_delivery_ms_p50": round(statistics.median(ms), 1),
           "last_delivery_ms_p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
           "median_delivery_ms_p50": round(statistics.median(median) * 1000, 1),
           "undelivered": lost}
    print(f"broadcast: {res}", flush=True)
    return res


def bench_connections(procs: Procs, redis_port: int, args: argparse.Namespace) -> dict:
    """Hold --max-conns authenticated connections over --procs processes, one port each."""
    url = f"redis://{HOST}:{redis_port}/0?prefix=conns"
    ports = [free_port() for _ in range(args.procs)]
    servers = [procs.serve(p, "--broker", url, "--store", url, "--ping-interval", "0",
                           name="conns") for p in ports]
    per = args.max_conns // args.procs
    t0 = time.monotonic()
    fleets = [Fleet(procs, p, per, f"fleet-c{i}", "--users", f"u{i}x") for i, p in
              enumerate(ports)]
    reports = [f.read(1800) for f in fleets]
    opened = sum(r["ready"] for r in reports)
    took = time.monotonic() - t0
    time.sleep(5.0)  # presence deltas flushed, a heartbeat gone by
    online = redis_cmd(redis_port, "HLEN", "conns:online")
    rss = sum(proc_rss_mb(s.pid) for s in servers)
    res = {"connections": opened, "wanted": per * args.procs, "processes": args.procs,
           "open_seconds": round(took, 1), "global_online_users": online,
           "server_rss_mb_total": round(rss), "failed": sum(r["failed"] for r in reports)}
    for f in fleets:
        f.tell("quit")
    for f in fleets:
        f.proc.wait(120)
    for s in servers:
        procs.stop(s)
    print(f"connections: {res}", flush=True)
    return res


def proc_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def redis_cmd(port: int, *words: str) -> Any:
    """One command over a raw socket (the bench needs no client library)."""
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(payload.encode())
        reply = sock.recv(4096).decode()
    if reply.startswith(":"):
        return int(reply[1:].strip())
    return reply.strip()


# -- the fleet process -----------------------------------------------------------------------


class Conn:
    __slots__ = ("sock", "buf", "stage", "n", "out")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.stage = 0  # 0 handshake, 1 welcome, 2 subscribe reply, 3 live
        self.n = 0  # messages received while live
        self.out = b""


def mask_frame(payload: bytes, opcode: int = 1) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + key + masked


def frames(c: Conn) -> list[tuple[int, bytes]]:
    out = []
    buf = c.buf
    while len(buf) >= 2:
        n = buf[1] & 0x7F
        at = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack_from("!H", buf, 2)[0]
            at = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack_from("!Q", buf, 2)[0]
            at = 10
        if len(buf) < at + n:
            break
        out.append((buf[0] & 0x0F, buf[at:at + n]))
        buf = buf[at + n:]
    c.buf = buf
    return out


def fleet_main(args: argparse.Namespace) -> None:
    """Open --count connections, optionally subscribe, then report deliveries per round."""
    raise_nofile()
    signer = None
    if args.users:
        sys.path.insert(0, str(ROOT))
        from wsapp.realtime.auth import Tokens

        signer = Tokens(secret=SECRET.encode())
    sel = selectors.DefaultSelector()
    conns: list[Conn] = []
    live = failed = 0
    subscribe = mask_frame(json.dumps({"op": "subscribe", "channel": args.subscribe,
                                       "id": 1}).encode()) if args.subscribe else b""
    expect = 0
    times: list[float] = []
    pending = 0
    started = 0
    deadline = time.monotonic() + args.open_timeout
    report_ready = False

    def send(c: Conn, data: bytes) -> None:
        try:
            c.sock.send(data)
        except OSError:
            pass

    def start_one(i: int) -> None:
        nonlocal pending
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, args.port))
        path = "/ws"
        if signer is not None:
            token, _ = signer.mint(f"{args.users}{i}", 86400)
            path += "?token=" + token
        key = base64.b64encode(os.urandom(16)).decode()
        c = Conn(s)
        c.out = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{args.port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        sel.register(s, selectors.EVENT_WRITE, c)
        conns.append(c)
        pending += 1

    stdin_open = True
    sel_stdin = False
    while True:
        now = time.monotonic()
        while started < args.count and pending < args.concurrency:
            start_one(started)
            started += 1
        if not report_ready and live + failed >= args.count:
            report_ready = True
            print(json.dumps({"ready": live, "failed": failed}), flush=True)
            sel.register(sys.stdin, selectors.EVENT_READ, None)
            sel_stdin = True
        if not report_ready and now > deadline:
            report_ready = True
            print(json.dumps({"ready": live, "failed": args.count - live}), flush=True)
            sel.register(sys.stdin, selectors.EVENT_READ, None)
            sel_stdin = True
        for key, ev in sel.select(1.0):
            c = key.data
            if c is None:  # a command from the driver
                line = sys.stdin.readline()
                if not line or line.startswith("quit"):
                    stdin_open = False
                    break
                expect = int(line.split()[1])
                times = []
                continue
            if ev & selectors.EVENT_WRITE:
                try:
                    c.sock.send(c.out)
                except OSError:
                    failed += 1
                    pending -= 1
                    sel.unregister(c.sock)
                    c.sock.close()
                    continue
                c.out = b""
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                if c.stage < 3:
                    failed += 1
                    pending -= 1 if c.stage < 3 else 0
                else:
                    live -= 1
                sel.unregister(c.sock)
                c.sock.close()
                c.stage = 9
                continue
            c.buf += data
            if c.stage == 0:
                if b"\r\n\r\n" not in c.buf:
                    continue
                head, _, c.buf = c.buf.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 101"):
                    failed += 1
                    pending -= 1
                    sel.unregister(c.sock)
                    c.sock.close()
                    c.stage = 9
                    continue
                c.stage = 1
            for opcode, payload in frames(c):
                if opcode == 9:
                    send(c, mask_frame(payload, 0xA))
                    continue
                if opcode != 1:
                    continue
                if c.stage == 1:  # the welcome
                    if subscribe:
                        send(c, subscribe)
                        c.stage = 2
                    else:
                        c.stage = 3
                        live += 1
                        pending -= 1
                elif c.stage == 2:  # the subscribe reply: ok, or an error that ends it
                    pending -= 1
                    if b'"op":"ok"' in payload:
                        c.stage = 3
                        live += 1
                    else:
                        failed += 1
                        c.stage = 9
                        sel.unregister(c.sock)
                        c.sock.close()
                        break
                else:
                    c.n += 1
                    if c.n == expect:
                        times.append(time.monotonic())
                        if len(times) == live:
                            print(json.dumps({"got": len(times), "last": times[-1],
                                              "median": statistics.median(times)}),
                                  flush=True)
        if not stdin_open:
            break
    if sel_stdin:
        sel.unregister(sys.stdin)
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("all", "echo", "broadcast", "connections", "_fleet"))
    ap.add_argument("--out", default=None, help="write the results here as JSON")
    ap.add_argument("--workdir", default="/tmp/wsapp-cluster-bench")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per echo run")
    ap.add_argument("--repeat", type=int, default=3, help="echo runs per configuration")
    ap.add_argument("--echo-conns", type=int, default=32)
    ap.add_argument("--conns", type=int, default=20000, help="broadcast subscribers")
    ap.add_argument("--procs", type=int, default=4, help="server processes (broadcast, "
                    "connections)")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--max-conns", type=int, default=60000)
    # _fleet
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--subscribe", default="")
    ap.add_argument("--users", default="")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--open-timeout", type=float, default=900.0)
    args = ap.parse_args(argv)
    if args.what == "_fleet":
        fleet_main(args)
        return 0
    raise_nofile()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Procs(workdir)
    results: dict[str, Any] = {"machine": machine()}
    print(json.dumps(results["machine"]), flush=True)
    try:
        redis_port = procs.redis()
        if args.what in ("all", "echo"):
            results["echo"] = bench_echo(procs, redis_port, args)
        if args.what in ("all", "broadcast"):
            results["broadcast"] = bench_broadcast(procs, redis_port, args)
        if args.what in ("all", "connections"):
            results["connections"] = bench_connections(procs, redis_port, args)
    finally:
        procs.stop_all()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
