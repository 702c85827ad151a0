"""Hostile /ws clients and a well-behaved probe, for bench/hostile.py and the fairness tests
(tests/hostile/test_fairness.py loads this file): one place that knows how each attack of
issue 12 looks on the wire.

- `Flooder`: one anonymous connection sending as fast as it can, from a thread, while
  another thread reads what the server answers (so the server never waits on it) and notes
  the close code. Kinds: `plain` (1 MiB JSON text frames), `compressed` (permessage-deflate
  frames of ~1 KB that inflate to 1 MiB of JSON), `rate` (small valid requests, far over
  the rate limit), `oversize` (deflate frames of ~2 KB that inflate past the 1 MiB limit).
- `FloodLoop`: a Flooder that comes back each time it is closed, for as long as asked.
- `StalledReplays`: connections of one user that subscribe with `since=0` to a channel with
  a large history and never read again (tiny receive buffers); `LivePublisher` keeps live
  messages coming to that channel meanwhile.
- `Trickle`: connections that send their upgrade request a byte at a time (slowloris).
- `Probe`: a well-behaved client: round trips of the `ping` op over /ws and GET /healthz.

Standard library plus wsapp's frame codec; every wait has a deadline.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import statistics
import struct
import threading
import time
import zlib
from typing import Any, Self

from wsapp.websocket.frames import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, build_frame, parse_header

MIB = 1024 * 1024
_HUGE = 1 << 62
KINDS = ("plain", "compressed", "rate", "oversize")


def upgrade(port: int, path: str = "/ws", *, extensions: str = "", rcvbuf: int = 0,
            timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    """A TCP connection upgraded to a WebSocket: (socket, bytes read past the 101).

    `rcvbuf` (set before connecting, so the window stays small) makes a reader that a
    server fills quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(f"no upgrade: {head[:200]!r}")
    return sock, rest


def masked(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A client frame."""
    return build_frame(opcode, payload, rsv1=rsv1, mask=os.urandom(4))


class Frames:
    """Frames read from a socket, each wait bounded by the socket's timeout."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(buffered)

    def next(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next frame; None once the connection ends."""
        for _ in range(1_000_000):
            head = parse_header(self.buf, _HUGE, require_mask=False, rsv1_allowed=True)
            if head is not None and len(self.buf) >= head.size + head.length:
                payload = bytes(self.buf[head.size:head.size + head.length])
                del self.buf[:head.size + head.length]
                return head.opcode, payload
            try:
                data = self.sock.recv(262144)
            except OSError:
                return None
            if not data:
                return None
            self.buf += data
        return None


def json_of_size(size: int) -> bytes:
    """A valid `ping` request of exactly `size` bytes, its padding (an ignored field) a
    list of zeros: ~half a million JSON values, as costly to parse as JSON gets per byte."""
    head = b'{"op":"ping","t":1,"pad":['
    tail = b'],"id":1}'
    room = size - len(head) - len(tail)
    values = b"0," * ((room - 1) // 2) + b"0"
    return head + values + b" " * (room - len(values)) + tail


def deflated(payload: bytes) -> bytes:
    """`payload` compressed as one permessage-deflate message (its own stream: valid with or
    without context takeover)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(payload) + comp.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


class Flooder:
    """One connection flooding /ws from a thread; `close_code` once the server closes it."""

    def __init__(self, port: int, kind: str, *, size: int = MIB - 1024,
                 seconds: float = 30.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.kind = kind
        extensions = "permessage-deflate" if kind in ("compressed", "oversize") else ""
        self.sock, rest = upgrade(port, extensions=extensions, timeout=seconds + 5)
        self.frames = Frames(self.sock, rest)
        if kind == "plain":
            self.batch = masked(OP_TEXT, json_of_size(size))
        elif kind == "compressed":
            self.batch = masked(OP_TEXT, deflated(json_of_size(size)), rsv1=True) * 16
        elif kind == "oversize":
            self.batch = masked(OP_TEXT, deflated(json_of_size(2 * size)), rsv1=True) * 16
        else:
            self.batch = b"".join(masked(OP_TEXT, b'{"op":"ping","t":1,"id":%d}' % i)
                                  for i in range(256))
        self.seconds = seconds
        self.sent = 0  # bytes
        self.close_code: int | None = None
        self.ended = threading.Event()  # the server ended the connection
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]

    def __enter__(self) -> Flooder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _send(self) -> None:
        deadline = time.monotonic() + self.seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.sock.sendall(self.batch)
                self.sent += len(self.batch)
        except OSError:
            pass  # the server closed it

    def _read(self) -> None:
        for _ in range(10_000_000):
            frame = self.frames.next()
            if frame is None:
                break
            if frame[0] == OP_CLOSE:
                payload = frame[1]
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
        self.ended.set()

    def stop(self) -> None:
        """Stop sending and drop the connection."""
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for thread in self._threads:
            thread.join(5)


class Background:
    """An attack run by a thread of its own, as a context manager: `_run` until the context
    ends (`_stop` is set) or its own deadline."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        raise NotImplementedError


class FloodLoop(Background):
    """A flooder of `kind` that reconnects whenever the server closes it, for `seconds`."""

    def __init__(self, port: int, kind: str, seconds: float = 30.0) -> None:
        super().__init__()
        self.port, self.kind, self.seconds = port, kind, seconds
        self.connections = 0
        self.close_codes: list[int | None] = []

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(100_000):
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return
            try:
                flood = Flooder(self.port, self.kind, seconds=left)
            except OSError:
                time.sleep(0.1)  # refused meanwhile (per-IP caps): try again
                continue
            self.connections += 1
            with flood:
                while not flood.ended.wait(0.1) and not self._stop.is_set() and \
                        time.monotonic() < deadline:
                    pass
            self.close_codes.append(flood.close_code)


class Trickle(Background):
    """`count` connections sending their upgrade request one byte per `interval` each, from
    one thread; the server should time them out without anyone else noticing."""

    def __init__(self, port: int, count: int = 200, interval: float = 0.2,
                 seconds: float = 30.0) -> None:
        self.port, self.count, self.interval, self.seconds = port, count, interval, seconds
        self.request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nX-Pad: " + "a" * 4000).encode()
        self.reconnects = 0
        super().__init__()

    def _open(self) -> list:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        return [sock, 0]

    def _run(self) -> None:
        conns = []
        try:
            for _ in range(self.count):
                conns.append(self._open())
            deadline = time.monotonic() + self.seconds
            while not self._stop.wait(self.interval) and time.monotonic() < deadline:
                for conn in conns:
                    sock, sent = conn
                    try:
                        sock.send(self.request[sent % len(self.request):][:1])
                        conn[1] += 1
                    except OSError:  # timed out by the server: come back
                        sock.close()
                        conn[:] = self._open()
                        self.reconnects += 1
        except OSError:
            pass
        finally:
            for sock, _ in conns:
                sock.close()


class Probe:
    """A well-behaved client: `ping` op round trips over its own /ws connection, and
    GET /healthz round trips on fresh HTTP connections."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock, rest = upgrade(port, timeout=timeout)
        self.frames = Frames(self.sock, rest)
        self.ids = 0
        self._expect("welcome")

    def _expect(self, op: str, rid: int | None = None) -> dict[str, Any]:
        for _ in range(10_000):
            frame = self.frames.next()
            if frame is None:
                raise ConnectionError("the server closed the probe's connection")
            opcode, payload = frame
            if opcode == OP_PING:
                self.sock.sendall(masked(OP_PONG, payload))
                continue
            if opcode != OP_TEXT:
                continue
            msg = json.loads(payload)
            if msg.get("op") == op and (rid is None or msg.get("id") == rid):
                return msg
        raise ConnectionError(f"no {op} among 10,000 frames")

    def ws_ping(self) -> float:
        """Seconds for one `ping` op's round trip."""
        self.ids += 1
        started = time.perf_counter()
        self.sock.sendall(masked(OP_TEXT, json.dumps({"op": "ping", "id": self.ids,
                                                      "t": 1}).encode()))
        self._expect("pong", self.ids)
        return time.perf_counter() - started

    def healthz(self) -> float:
        """Seconds for one GET /healthz (a new connection, as a load balancer makes)."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise ConnectionError(f"/healthz answered {resp.status}")
        finally:
            conn.close()
        return time.perf_counter() - started

    def sample(self, count: int, pause: float = 0.02) -> dict[str, list[float]]:
        """`count` round trips of each kind, alternating."""
        out: dict[str, list[float]] = {"ws_ping": [], "healthz": []}
        for _ in range(count):
            out["ws_ping"].append(self.ws_ping())
            out["healthz"].append(self.healthz())
            time.sleep(pause)
        return out

    def close(self) -> None:
        self.sock.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p99 (nearest rank) in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000,
            "max_ms": ordered[-1] * 1000}


def http_json(port: int, method: str, path: str, body: Any = None, key: str = "",
              timeout: float = 30.0) -> tuple[int, Any]:
    """(status, JSON) of one API call."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def fill_history(port: int, channel: str, count: int, size: int, key: str = "") -> None:
    """Publish `count` messages of ~`size` bytes to `channel` over the HTTP API."""
    for i in range(count):
        status, body = http_json(port, "POST", "/api/publish",
                                 {"channel": channel, "data": {"i": i, "pad": "x" * size}}, key)
        if status != 200:
            raise ConnectionError(f"publish answered {status}: {body}")


class LivePublisher(Background):
    """Publishes ~`size`-byte messages to `channel` every `interval` s from a thread."""

    def __init__(self, port: int, channel: str, size: int = 5000, interval: float = 0.01,
                 key: str = "", limit: int = 100_000) -> None:
        self.port, self.channel, self.size, self.interval = port, channel, size, interval
        self.key, self.limit = key, limit
        self.sent = 0
        super().__init__()

    def _run(self) -> None:
        for i in range(self.limit):
            if self._stop.wait(self.interval):
                return
            try:
                http_json(self.port, "POST", "/api/publish",
                          {"channel": self.channel, "data": {"live": i, "pad": "y" * self.size}},
                          self.key)
            except OSError:
                continue
            self.sent += 1


class StalledReplays:
    """`count` connections of one user that subscribe to `channel` with since=0, then never
    read (4 KiB receive buffers)."""

    def __init__(self, port: int, token: str, channel: str, count: int) -> None:
        self.socks: list[socket.socket] = []
        for _ in range(count):
            sock, _ = upgrade(port, f"/ws?token={token}", rcvbuf=4096)
            sock.sendall(masked(OP_TEXT, json.dumps({"op": "subscribe", "id": 1,
                                                     "channel": channel, "since": 0}).encode()))
            self.socks.append(sock)

    def open_count(self, timeout: float = 0.5) -> int:
        """How many the server has not closed: each is drained (bounded) to see its end."""
        still = 0
        for sock in self.socks:
            if not _ends_soon(sock, timeout):
                still += 1
        return still

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _ends_soon(sock: socket.socket, timeout: float) -> bool:
    """Read and discard; True if the connection ends (EOF or reset), False if data stops
    coming for `timeout` (or still flows after 10x that) while it stays open."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + 10 * timeout
    for _ in range(100_000):
        if time.monotonic() > deadline:
            return False
        try:
            if not sock.recv(262144):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False
