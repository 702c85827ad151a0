"""A raw Socket.IO client for bench/socketio_bench.py: Engine.IO v4 on one WebSocket per
connection, no threads and no python-socketio, so that thousands of clients cost the load
process little per message and the server is what gets measured.

It speaks just what the benchmark needs of the wire protocol: the Engine.IO open packet
("0{...}"), Socket.IO CONNECT to "/" ("40" -> "40{sid}"), events with ack ids
("42<id>[...]" -> "43<id>[...]"), events ("42[...]"), and Engine.IO pings ("2" -> "3");
WebSocket pings are answered with pongs. Frames go out masked with a zero key (allowed by
RFC 6455, and the server unmasks all the same), come in unmasked and unfragmented.
"""

from __future__ import annotations

import selectors
import socket
import time

from client import OP_CLOSE, OP_TEXT, client_frame, open_ws_early, split_frames

SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
OP_PING, OP_PONG = 0x9, 0xA
ZERO_MASK = b"\x00\x00\x00\x00"
RECV_SIZE = 1 << 16


class SioError(ConnectionError):
    """The server closed the connection or answered something unexpected."""


class SioConn:
    """One Socket.IO client connection (namespace "/")."""

    __slots__ = ("sock", "buf", "out", "sid")

    def __init__(self, sock: socket.socket, early: bytes) -> None:
        self.sock = sock
        self.buf = early
        self.out = bytearray()
        self.sid = ""

    @classmethod
    def open(cls, host: str, port: int, timeout: float = 10.0) -> SioConn:
        """Connect, wait for the Engine.IO open packet, join "/"; returns a non-blocking
        connection."""
        sock, early = open_ws_early(host, port, SIO_PATH, timeout)
        conn = cls(sock, early)
        try:
            first = conn._next_packet(timeout)
            if not first.startswith("0{"):
                raise SioError(f"expected the Engine.IO open packet, got {first[:80]!r}")
            conn.emit_raw("0")
            conn.flush_blocking()
            joined = conn._next_packet(timeout)
            if not joined.startswith("40"):
                raise SioError(f"expected CONNECT to '/', got {joined[:80]!r}")
            conn.sid = joined
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return conn

    def _next_packet(self, timeout: float) -> str:
        """Blocking: the next Engine.IO packet (while connecting)."""
        deadline = time.monotonic() + timeout
        while True:
            packets = self.parse()
            if packets:
                if len(packets) > 1:
                    raise SioError(f"unexpected packets while connecting: {packets[1:]!r}")
                return packets[0]
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise SioError("the server closed the connection while connecting")
            self.buf += data

    # -- frames in and out ---------------------------------------------------------------

    def parse(self) -> list[str]:
        """Engine.IO packets complete in the buffer; pings are answered (queued in `out`).
        Raises SioError on a close frame."""
        frames, self.buf = split_frames(self.buf)
        packets = []
        for op, payload in frames:
            if op == OP_TEXT:
                text = payload.decode()
                if text == "2":  # Engine.IO ping
                    self.out += client_frame(b"3", OP_TEXT, ZERO_MASK)
                else:
                    packets.append(text)
            elif op == OP_PING:
                self.out += client_frame(payload, OP_PONG, ZERO_MASK)
            elif op == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise SioError(f"the server closed the connection: {code} "
                               f"{payload[2:].decode(errors='replace')}")
            elif op != OP_PONG:
                raise SioError(f"unexpected frame opcode {op}")
        return packets

    def feed(self) -> list[str]:
        """Non-blocking: read what is there; the Socket.IO packets that came complete (each
        Engine.IO message without its "4")."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return []
        if not data:
            raise SioError("the server closed the TCP connection")
        self.buf += data
        return [p[1:] for p in self.parse() if p[:1] == "4"]

    def emit_raw(self, sio_packet: str) -> None:
        """Queue one Engine.IO message carrying `sio_packet` (e.g. '2["event",1]')."""
        self.out += client_frame(("4" + sio_packet).encode(), OP_TEXT, ZERO_MASK)

    def flush(self) -> None:
        """Non-blocking: send what the socket takes now."""
        if self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:sent]

    def flush_blocking(self) -> None:
        self.sock.sendall(self.out)
        self.out.clear()

    def close(self) -> None:
        try:
            self.sock.send(client_frame(b"\x03\xe8", OP_CLOSE, ZERO_MASK))
        except OSError:
            pass
        self.sock.close()


class Group:
    """The connections to one server, on one selector."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sel = selectors.DefaultSelector()
        self.conns: list[SioConn] = []

    def open(self, count: int, timeout: float = 10.0) -> float:
        """Open `count` more connections one by one; the seconds it took."""
        t0 = time.monotonic()
        for _ in range(count):
            conn = SioConn.open(self.host, self.port, timeout)
            self.sel.register(conn.sock, selectors.EVENT_READ, conn)
            self.conns.append(conn)
        return time.monotonic() - t0

    def poll(self, timeout: float) -> list[tuple[SioConn, list[str]]]:
        """One select round: (connection, its new Socket.IO packets) for each that had
        data; pongs owed are sent."""
        out = []
        for key, _ in self.sel.select(timeout):
            conn: SioConn = key.data
            packets = conn.feed()
            conn.flush()
            if packets:
                out.append((conn, packets))
        return out

    def service(self, rounds: int = 50) -> None:
        """Answer whatever pings are waiting (between measurements)."""
        for _ in range(rounds):
            if not self.sel.select(0):
                return
            self.poll(0)

    def close(self) -> None:
        for conn in self.conns:
            self.sel.unregister(conn.sock)
            conn.close()
        self.conns.clear()
        self.sel.close()
