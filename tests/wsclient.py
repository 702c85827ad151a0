"""A raw-socket WebSocket client for tests that must send what real clients never would.

Frames are built and parsed with wsapp.websocket.frames (a pure codec); everything else, from
the HTTP
request to reading the reply, is plain socket code with a deadline on every read.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib
from pathlib import Path
from typing import NamedTuple

from wsapp.websocket.frames import OP_CLOSE, OP_PING, build_frame, parse_header

APPS = Path(__file__).resolve().parent / "apps"

KEY = base64.b64encode(b"0123456789abcdef").decode("ascii")
_HUGE = 1 << 62  # parse any length the server could send


class Response(NamedTuple):
    """An HTTP response: status code, lower-cased headers, body, and bytes read past it."""

    status: int
    headers: dict[str, str]
    body: bytes
    rest: bytes


class Frame(NamedTuple):
    """A frame the server sent."""

    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to the server on 127.0.0.1."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(port: int, path: str = "/ws/echo", *, version: str = "HTTP/1.1",
            headers: dict[str, str] | None = None, omit: tuple[str, ...] = ()) -> bytes:
    """The bytes of an upgrade request; `headers` override or add, `omit` removes."""
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"GET {path} {version}"]
    lines += [f"{k}: {v}" for k, v in fields.items() if k not in omit]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no reply from the server in time")
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def read_response(sock: socket.socket, timeout: float = 5.0) -> Response:
    """Read one HTTP response; the body by Content-Length (none for 101)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = _recv(sock, deadline)
        if not data:
            raise EOFError(f"connection closed mid-response: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 101:
        return Response(status, headers, b"", rest)
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = _recv(sock, deadline)
        if not data:
            break
        rest += data
    return Response(status, headers, rest[:length], rest[length:])


def handshake(port: int, path: str = "/ws/echo", timeout: float = 5.0,
              **kwargs) -> tuple[socket.socket, Response]:
    """Connect, send an upgrade request, read the response (whatever its status)."""
    sock = connect(port, timeout)
    sock.sendall(request(port, path, **kwargs))
    return sock, read_response(sock, timeout)


def deflate_bomb(size: int) -> bytes:
    """A permessage-deflate payload (tail stripped) that inflates to `size` zero bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = []
    for start in range(0, size, len(chunk)):
        parts.append(comp.compress(chunk[:size - start]))
    parts.append(comp.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


class RawClient:
    """An upgraded connection driven byte by byte."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(buffered)
        self.port = sock.getsockname()[1]

    @classmethod
    def open(cls, port: int, path: str = "/ws/echo", **kwargs) -> RawClient:
        """Handshake and return the client; fails the test unless the server says 101."""
        sock, resp = handshake(port, path, **kwargs)
        if resp.status != 101:
            sock.close()
            raise AssertionError(f"expected 101, got {resp.status}: {resp.body!r}")
        return cls(sock, resp.rest)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def peer(self) -> str:
        """How the server's log names this client."""
        return f"127.0.0.1:{self.port}"

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True,
                   rsv1: bool = False, masked: bool = True) -> None:
        """Send one frame, masked like a client's unless masked=False."""
        mask = os.urandom(4) if masked else None
        self.sock.sendall(build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))

    def send_close(self, code: int = 1000, reason: bytes = b"") -> None:
        """Send a close frame."""
        self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason)

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        """The next frame from the server; EOFError if the connection ends first."""
        deadline = time.monotonic() + timeout
        while True:
            head = parse_header(self.buf, _HUGE, require_mask=False, rsv1_allowed=True)
            if head is not None and len(self.buf) >= head.size + head.length:
                payload = bytes(self.buf[head.size:head.size + head.length])
                del self.buf[:head.size + head.length]
                return Frame(head.fin, head.rsv1, head.opcode, payload)
            data = _recv(self.sock, deadline)
            if not data:
                raise EOFError("connection closed before a whole frame arrived")
            self.buf += data

    def expect_close(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server's close frame; return its (code, reason), code None if
        empty. Pings are skipped; any data frame fails the test."""
        deadline = time.monotonic() + timeout
        for _ in range(100):
            frame = self.recv_frame(max(deadline - time.monotonic(), 0.001))
            if frame.opcode == OP_PING:
                continue
            assert frame.opcode == OP_CLOSE, (
                f"expected a close frame, got opcode {frame.opcode} with "
                f"{len(frame.payload)} bytes: {frame.payload[:40]!r}")
            if not frame.payload:
                return None, ""
            code = struct.unpack("!H", frame.payload[:2])[0]
            return code, frame.payload[2:].decode("utf-8")
        raise AssertionError("no close frame among 100 frames")

    def wait_eof(self, timeout: float = 5.0) -> bool:
        """Read and discard until the server closes TCP; False on timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            try:
                if not _recv(self.sock, deadline):
                    return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        """Drop the TCP connection."""
        self.sock.close()
