"""Cheap-per-message WebSocket load client for the echo benchmark (loopback only).

Two modes, each printing one JSON object on stdout:

* ``echo``: a few connections, each keeping ``--window`` pre-built masked frames in flight.
  Replies are counted by bytes (every reply on a connection has the same known size) instead of
  being parsed; received bytes are compared with the expected reply stream (every read by
  default), so a server that garbles, cross-wires or re-types messages scores as failed.
* ``idle``: opens ``--count`` WebSocket connections (full handshake each) at a bounded rate and
  concurrency, reads the server's VmRSS before and after, then closes them all.
"""

from __future__ import annotations

import argparse
import base64
import errno
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from bench/
from wsapp.websocket.handshake import accept_key  # noqa: E402

RECV_SIZE = 1 << 18
OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- frames and handshake -------------------------------------------------------------------


def _length_header(first: int, n: int, mask_bit: int) -> bytes:
    if n < 126:
        return bytes((first, mask_bit | n))
    if n < 1 << 16:
        return struct.pack("!BBH", first, mask_bit | 126, n)
    return struct.pack("!BBQ", first, mask_bit | 127, n)


def client_frame(payload: bytes, opcode: int, mask: bytes | None = None) -> bytes:
    """One final, masked client frame carrying ``payload``."""
    mask = mask if mask is not None else os.urandom(4)
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return _length_header(0x80 | opcode, n, 0x80) + mask + body


def server_frame(payload: bytes, opcode: int) -> bytes:
    """The unmasked frame a server sends for ``payload`` in one final frame."""
    return _length_header(0x80 | opcode, len(payload), 0) + payload


def handshake_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """An HTTP upgrade request (no extensions offered) and the Sec-WebSocket-Accept it expects."""
    key = base64.b64encode(os.urandom(16))
    accept = accept_key(key.decode("ascii")).encode("ascii")
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
    ).encode()
    return req, accept


def check_response(head: bytes, accept: bytes) -> None:
    """Raise ValueError unless ``head`` is a 101 response carrying the right accept key."""
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        raise ValueError(f"handshake refused: {lines[0][:80]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            if value.strip() != accept:
                raise ValueError("bad Sec-WebSocket-Accept")
            return
    raise ValueError("no Sec-WebSocket-Accept")


def open_ws(host: str, port: int, path: str, timeout: float = 10.0) -> socket.socket:
    """Blocking connect + handshake; returns the socket positioned at the first frame."""
    sock, rest = open_ws_early(host, port, path, timeout)
    if rest:
        sock.close()
        raise ValueError("unexpected data after the handshake")
    return sock


def open_ws_early(host: str, port: int, path: str, timeout: float = 10.0
                  ) -> tuple[socket.socket, bytes]:
    """Like open_ws, for servers that speak first: also returns the bytes that came with the
    101 response (the start of the first frames)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req, accept = handshake_request(host, port, path)
    sock.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed during handshake")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    check_response(head, accept)
    return sock, rest


def split_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete (unmasked, server-sent) frames at the start of ``buf`` as (opcode,
    payload), and the bytes of an incomplete frame left after them."""
    frames = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        op, n, hdr = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
        if n == 126:
            if size - pos < 4:
                break
            n, hdr = struct.unpack_from("!H", buf, pos + 2)[0], 4
        elif n == 127:
            if size - pos < 10:
                break
            n, hdr = struct.unpack_from("!Q", buf, pos + 2)[0], 10
        if size - pos < hdr + n:
            break
        frames.append((op, buf[pos + hdr : pos + hdr + n]))
        pos += hdr + n
    return frames, buf[pos:]


# --- process measurements -------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def self_cpu_seconds() -> float:
    """CPU seconds (user + system) used by this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def wait_quiet(pid: int, max_wait: float = 10.0, window: float = 0.25) -> float:
    """Wait until ``pid`` uses < ~5% CPU over ``window`` seconds; return seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        c0 = proc_cpu_seconds(pid)
        time.sleep(window)
        if proc_cpu_seconds(pid) - c0 <= 0.05 * window + 1.0 / CLK_TCK:
            break
    return time.monotonic() - t0


# --- echo throughput ------------------------------------------------------------------------


class _Conn:
    __slots__ = ("sock", "txbuf", "frame", "reply", "window", "period", "pattern", "rx",
                 "replies", "sent", "nxt", "out", "reads", "checked", "bad")

    def __init__(self, sock: socket.socket, payloads: list[bytes], opcode: int) -> None:
        self.sock = sock
        frames = [client_frame(p, opcode) for p in payloads]
        self.frame = len(frames[0])
        self.txbuf = memoryview(b"".join(frames * 2))  # doubled so wrap-around slices are flat
        replies = [server_frame(p, opcode) for p in payloads]
        self.reply = len(replies[0])
        self.window = len(payloads)
        period = b"".join(replies)
        self.period = len(period)
        self.pattern = period * (RECV_SIZE // len(period) + 2)
        self.rx = self.replies = self.sent = self.nxt = self.reads = self.checked = self.bad = 0
        self.out: memoryview | bytes = b""


def _payloads(conn_id: int, size: int, window: int, binary: bool) -> list[bytes]:
    out = []
    for slot in range(window):
        if binary:
            out.append(os.urandom(size))
        else:
            tag = f"c{conn_id}m{slot}:".encode()
            fill = bytes(0x61 + (conn_id * 7 + slot + i) % 26 for i in range(size))
            out.append((tag + fill)[:size])
    return out


def _send(sel: selectors.BaseSelector, c: _Conn, data: memoryview | bytes) -> None:
    if c.out:
        c.out = bytes(c.out) + bytes(data)
        return
    try:
        sent = c.sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        c.out = data[sent:]
        sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)


def _flush(sel: selectors.BaseSelector, c: _Conn) -> None:
    try:
        sent = c.sock.send(c.out)
    except BlockingIOError:
        return
    c.out = c.out[sent:]
    if not c.out:
        c.out = b""
        sel.modify(c.sock, selectors.EVENT_READ, c)


def run_echo(
    host: str,
    port: int,
    path: str,
    size: int,
    binary: bool,
    conns: int,
    window: int,
    duration: float,
    warmup: float,
    server_pid: int | None,
    verify_every: int = 1,
    poll_delay: float = 0.0005,
    batch_bytes: int = 1 << 16,
) -> dict[str, Any]:
    """Pipelined echo load for ``warmup + duration`` s; returns rates measured after warmup."""
    opcode = OP_BINARY if binary else OP_TEXT
    sel = selectors.DefaultSelector()
    cs = []
    for i in range(conns):
        c = _Conn(open_ws(host, port, path), _payloads(i, size, window, binary), opcode)
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
        cs.append(c)
    total = 0
    marks: dict[str, Any] = {}
    end: dict[str, Any] = {}
    t_start = time.monotonic()
    t_warm, t_end = t_start + warmup, t_start + warmup + duration
    for c in cs:
        _send(sel, c, c.txbuf[: window * c.frame])
        c.sent = window
    error = None
    replenish = True
    t_drain = t_end
    try:
        while True:
            now = time.monotonic()
            if not marks and now >= t_warm:
                marks = {"t": now, "n": total, "cpu": self_cpu_seconds(),
                         "scpu": proc_cpu_seconds(server_pid) if server_pid else 0.0}
            if replenish and now >= t_end:
                # stop measuring; then collect every echo still in flight before closing
                end = {"t": now, "n": total, "cpu": self_cpu_seconds(),
                       "scpu": proc_cpu_seconds(server_pid) if server_pid else 0.0}
                replenish = False
                # a slow server needs time to work through the window: 3x its own pace
                rate = total / max(now - t_start, 1e-3)
                inflight = sum(c.sent - c.replies for c in cs)
                t_drain = now + min(60.0, max(5.0, 3 * inflight / max(rate, 1e-3)))
            if not replenish and (now > t_drain or all(c.replies == c.sent for c in cs)):
                break
            got = 0
            for key, ev in sel.select(0.2):
                c = key.data
                if ev & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(RECV_SIZE)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise ConnectionError("server closed the connection mid-run")
                    n = len(data)
                    got += n
                    c.reads += 1
                    if c.reads <= 32 or c.reads % verify_every == 0:
                        off = c.rx % c.period
                        if not c.pattern.startswith(data, off):  # compares in place, no slice
                            c.bad += 1
                        c.checked += n
                    c.rx += n
                    done = c.rx // c.reply - c.replies
                    if done:
                        c.replies += done
                        total += done
                        if replenish:
                            i = c.nxt
                            c.nxt = (i + done) % c.window
                            c.sent += done
                            _send(sel, c, c.txbuf[i * c.frame : (i + done) * c.frame])
                if ev & selectors.EVENT_WRITE and c.out:
                    _flush(sel, c)
            if got < batch_bytes and poll_delay:
                # let replies pile up in the socket buffers: far fewer syscalls per message,
                # while the window keeps the server busy meanwhile
                time.sleep(poll_delay)
    except (OSError, ConnectionError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if not end:
        end = {"t": time.monotonic(), "n": total, "cpu": self_cpu_seconds(),
               "scpu": proc_cpu_seconds(server_pid) if server_pid else 0.0}
    lost = sum(c.sent - c.replies for c in cs)
    if error is None and lost:
        error = f"{lost} echoes never came back"
    unanswered = _close_all([c.sock for c in cs], 5.0, [bytes(c.out) for c in cs])
    sel.close()
    if not marks:
        marks = {"t": t_start, "n": 0, "cpu": 0.0, "scpu": 0.0}
    t1, cpu1, scpu1 = end["t"], end["cpu"], end["scpu"]
    wall = t1 - marks["t"]
    msgs = end["n"] - marks["n"]
    bad = sum(c.bad for c in cs)
    return {
        "size": size,
        "binary": binary,
        "conns": conns,
        "window": window,
        "seconds": round(wall, 3),
        "messages": msgs,
        "msg_per_s": msgs / wall if wall > 0 else 0.0,
        "mb_per_s": msgs * size / wall / 1e6 if wall > 0 else 0.0,
        "client_cpu_pct": 100.0 * (cpu1 - marks["cpu"]) / wall if wall > 0 else 0.0,
        "server_cpu_pct": 100.0 * (scpu1 - marks["scpu"]) / wall if server_pid and wall else None,
        "verified_bytes": sum(c.checked for c in cs),
        "mismatches": bad,
        "close_unanswered": unanswered,
        "error": error,
        "ok": error is None and bad == 0 and msgs > 0,
    }


# --- idle connections -----------------------------------------------------------------------


def _close_all(
    socks: list[socket.socket], drain: float, pending: list[bytes] | None = None
) -> int:
    """Send any ``pending`` bytes and a close frame on every socket, read until EOF (at most
    ``drain`` s), then close them all; returns how many never saw EOF."""
    close = client_frame(struct.pack("!H", 1000), OP_CLOSE)
    sel = selectors.DefaultSelector()
    out: dict[socket.socket, memoryview] = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        out[s] = memoryview((bytes(pending[i]) if pending else b"") + close)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    left = len(socks)
    deadline = time.monotonic() + drain

    def drop(s: socket.socket) -> None:
        nonlocal left
        sel.unregister(s)
        s.close()
        left -= 1

    while left and time.monotonic() < deadline:
        for key, ev in sel.select(0.2):
            s: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                if ev & selectors.EVENT_WRITE:
                    out[s] = out[s][s.send(out[s]) :]
                    if not out[s]:
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ and not s.recv(RECV_SIZE):
                    drop(s)
            except BlockingIOError:
                continue
            except OSError:
                drop(s)
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    return left


def _tracemalloc_current(pid: int, stats_file: str, timeout: float = 30.0) -> int | None:
    """Ask the server (SIGUSR1) for its traced memory and wait for the answer file."""
    try:
        before = os.stat(stats_file).st_mtime_ns
    except FileNotFoundError:
        before = None
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(stats_file).st_mtime_ns != before:
                with open(stats_file) as fh:
                    return int(json.load(fh)["current"])
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    return None


class IdleFleet:
    """Many idle WebSockets on one selector: opened at a bounded rate, pings answered."""

    def __init__(self, host: str, port: int, path: str, timeout: float) -> None:
        self.host, self.port, self.path, self.timeout = host, port, path, timeout
        self.sel = selectors.DefaultSelector()
        self.open: set[socket.socket] = set()
        self.inflight: dict[socket.socket, list[Any]] = {}
        self.bufs: dict[socket.socket, bytes] = {}
        self.failures = self.lost = self.pongs = 0

    def _fail(self, s: socket.socket) -> None:
        self.failures += 1
        self.sel.unregister(s)
        self.inflight.pop(s, None)
        s.close()

    def _lose(self, s: socket.socket) -> None:
        self.lost += 1
        self.sel.unregister(s)
        self.open.discard(s)
        self.bufs.pop(s, None)
        s.close()

    def _start(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((self.host, self.port))
        if err not in (0, errno.EINPROGRESS):
            self.failures += 1
            s.close()
            return
        req, accept = handshake_request(self.host, self.port, self.path)
        self.inflight[s] = [time.monotonic(), req, accept, b""]
        self.sel.register(s, selectors.EVENT_WRITE, "hs")

    def _handshake(self, s: socket.socket, ev: int) -> None:
        st = self.inflight[s]
        if ev & selectors.EVENT_WRITE:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._fail(s)
                return
            s.send(st[1])
            self.sel.modify(s, selectors.EVENT_READ, "hs")
            return
        data = s.recv(4096)
        if not data:
            self._fail(s)
            return
        st[3] += data
        if b"\r\n\r\n" in st[3]:
            head, _, rest = st[3].partition(b"\r\n\r\n")
            try:
                check_response(head, st[2])
            except ValueError:
                self._fail(s)
                return
            del self.inflight[s]
            self.open.add(s)
            self.sel.modify(s, selectors.EVENT_READ, "open")
            if rest:
                self._frames(s, rest)

    def _frames(self, s: socket.socket, data: bytes) -> None:
        """Answer pings; a close frame counts the connection as lost."""
        frames, buf = split_frames(self.bufs.pop(s, b"") + data)
        for op, payload in frames:
            if op == 0x9:
                s.send(client_frame(payload, 0xA))
                self.pongs += 1
            elif op == OP_CLOSE:
                self._lose(s)
                return
        if buf:
            self.bufs[s] = buf

    def pump(self, timeout: float) -> None:
        """One select round: handshake progress, pings, closures."""
        for key, ev in self.sel.select(timeout):
            s: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                if key.data == "hs":
                    self._handshake(s, ev)
                    continue
                data = s.recv(4096)
                if data:
                    self._frames(s, data)
                else:
                    self._lose(s)
            except BlockingIOError:
                continue
            except OSError:
                if key.data == "hs":
                    self._fail(s)
                else:
                    self._lose(s)
        now = time.monotonic()
        for s in [s for s, st in self.inflight.items() if now - st[0] > self.timeout]:
            self._fail(s)

    def open_many(self, count: int, concurrency: int, rate: float, limit: float) -> float:
        """Open ``count`` more connections, at most ``concurrency`` handshakes in flight and
        ``rate`` per second, giving up after ``limit`` s; returns the seconds taken."""
        t0 = time.monotonic()
        started = 0
        while (started < count or self.inflight) and time.monotonic() - t0 < limit:
            allowed = min(count, int(rate * (time.monotonic() - t0)) + 1)
            while started < allowed and len(self.inflight) < concurrency:
                self._start()
                started += 1
            self.pump(0.005)
        for s in list(self.inflight):
            self._fail(s)
        self.failures += count - started
        return time.monotonic() - t0

    def idle(self, seconds: float) -> None:
        """Keep answering pings for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(min(0.05, max(0.0, end - time.monotonic())))

    def wait_quiet(self, pid: int, max_wait: float = 10.0, window: float = 0.25) -> float:
        """Like wait_quiet(), answering pings meanwhile."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < max_wait:
            c0 = proc_cpu_seconds(pid)
            self.idle(window)
            if proc_cpu_seconds(pid) - c0 <= 0.05 * window + 1.0 / CLK_TCK:
                break
        return time.monotonic() - t0

    def close(self, drain: float) -> int:
        """Close every open connection (close frame, wait for EOF); returns unanswered count."""
        socks = list(self.open)
        for s in socks:
            self.sel.unregister(s)
        self.open.clear()
        self.sel.close()
        return _close_all(socks, drain)


def run_idle(
    host: str,
    port: int,
    path: str,
    count: int,
    server_pid: int,
    concurrency: int = 64,
    rate: float = 4000.0,
    timeout: float = 10.0,
    stats_file: str | None = None,
    open_limit: float = 240.0,
) -> dict[str, Any]:
    """Server memory per idle WebSocket: (RSS with ``count`` open - RSS before) / count."""
    limit = raise_nofile()
    if limit < count + 64:
        raise SystemExit(f"RLIMIT_NOFILE {limit} too low for {count} connections")
    warm = IdleFleet(host, port, path, timeout)  # first-use allocations are not per-connection
    warm.open_many(50, 16, 1000.0, 30.0)
    warm.close(2.0)
    fleet = IdleFleet(host, port, path, timeout)
    fleet.wait_quiet(server_pid)
    rss0 = proc_rss_kb(server_pid)
    tm0 = _tracemalloc_current(server_pid, stats_file) if stats_file else None
    secs = fleet.open_many(count, concurrency, rate, open_limit)
    settle = fleet.wait_quiet(server_pid)
    rss1 = proc_rss_kb(server_pid)
    tm1 = _tracemalloc_current(server_pid, stats_file) if stats_file else None
    n, lost = len(fleet.open), fleet.lost
    fleet.idle(0.2)  # anything the server closed during the measurement shows up now
    alive = len(fleet.open)
    not_closed = fleet.close(10.0)
    wait_quiet(server_pid)
    rss2 = proc_rss_kb(server_pid)
    return {
        "requested": count,
        "opened": n + lost,
        "failures": fleet.failures,
        "lost_before_measure": lost,
        "alive_at_measure": alive,
        "pongs_sent": fleet.pongs,
        "open_seconds": round(secs, 3),
        "handshakes_per_s": (n + lost) / secs if secs else 0.0,
        "settle_seconds": round(settle, 2),
        "rss_before_kb": rss0,
        "rss_open_kb": rss1,
        "rss_after_close_kb": rss2,
        "bytes_per_conn": (rss1 - rss0) * 1024 / n if n else None,
        "traced_bytes_per_conn": (tm1 - tm0) / n if n and tm0 is not None and tm1 is not None
        else None,
        "close_unanswered": not_closed,
        "ok": n == count and alive == n,
    }


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run one client workload and print its result as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("echo", "idle"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/ws/echo")
    ap.add_argument("--cpu", type=int, default=None, help="pin the client to this CPU")
    ap.add_argument("--server-pid", type=int, default=None)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--binary", action="store_true")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--verify-every", type=int, default=1,
                    help="compare every Nth read with the expected stream (first 32 always)")
    ap.add_argument("--poll-delay", type=float, default=0.0005,
                    help="sleep after a read round that got < 64 KiB, to batch replies")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rate", type=float, default=4000.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--stats-file", default=None)
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_nofile()
    if args.mode == "echo":
        res = run_echo(args.host, args.port, args.path, args.size, args.binary, args.conns,
                       args.window, args.duration, args.warmup, args.server_pid,
                       verify_every=args.verify_every, poll_delay=args.poll_delay)
    else:
        if args.server_pid is None:
            raise SystemExit("idle mode needs --server-pid")
        res = run_idle(args.host, args.port, args.path, args.count, args.server_pid,
                       args.concurrency, args.rate, args.timeout, args.stats_file)
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
