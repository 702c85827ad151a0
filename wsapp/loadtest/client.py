"""A lean greenlet WebSocket client: a gevent socket, the project's frame codec, one reader.

Why not a client library: at 10k+ connections per process, per-connection cost decides how
far one process goes. Here a connection is a socket, a small buffer and one greenlet; frames
are parsed and built by `wsapp.websocket.frames`. Pings from the server are answered at once
(the server
drops peers that do not answer). Errors are `ClientError`s with a short `kind` for counting.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import socket as _stdsocket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent
from gevent import socket
from gevent.lock import Semaphore

from wsapp.websocket import frames
from wsapp.websocket.handshake import accept_key

_MAX_HEADER = 16384
_MAX_MESSAGE = 64 * 1024 * 1024
# Linux: let connect() pick the port after bind(ip, 0), so each source address gets its own
# full port range per destination instead of one range shared by all destinations.
_IP_BIND_ADDRESS_NO_PORT = getattr(_stdsocket, "IP_BIND_ADDRESS_NO_PORT", 24)


class ClientError(Exception):
    """A connection failed; `kind` is a short stable name used to count errors."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class HandshakeRefused(ClientError):
    """The server answered the upgrade with something other than 101; `status` is its line."""

    def __init__(self, status_line: str, body: str) -> None:
        code = status_line.split(" ")[1] if status_line.count(" ") else "?"
        super().__init__(f"handshake_{code}", f"server answered {status_line!r}"
                         + (f": {body}" if body else ""))
        self.status_line = status_line
        self.body = body


@dataclass(frozen=True)
class Target:
    """Where to connect: host, port, and the request path with its query string."""

    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """Parse a ws:// URL (wss:// is refused: this client does not do TLS)."""
        u = urlsplit(url)
        if u.scheme not in ("ws", "http"):
            raise ValueError(f"unsupported URL scheme {u.scheme!r} in {url!r} (use ws://)")
        if not u.hostname:
            raise ValueError(f"no host in URL {url!r}")
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        return cls(u.hostname, u.port or 80, path)

    def with_query(self, **params: str) -> Target:
        """The same target with extra query parameters appended."""
        extra = "&".join(f"{k}={v}" for k, v in params.items())
        sep = "&" if "?" in self.path else "?"
        return Target(self.host, self.port, self.path + sep + extra)

    @property
    def host_header(self) -> str:
        """The Host header value (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"


def classify_oserror(exc: OSError, during: str) -> ClientError:
    """Turn a socket error into a ClientError with a countable kind."""
    code = exc.errno
    if isinstance(exc, TimeoutError) or isinstance(exc, _stdsocket.timeout):
        return ClientError(f"{during}_timeout", f"{during} timed out")
    if code in (errno.EMFILE, errno.ENFILE):
        return ClientError("fd_limit", "too many open files (raise `ulimit -n`)")
    if code == errno.EADDRNOTAVAIL:
        return ClientError("no_local_port",
                           "out of local ports for this source address (use --source-ips)")
    if code == errno.ECONNREFUSED:
        return ClientError("connect_refused", "connection refused")
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return ClientError("reset", f"connection reset during {during}")
    name = errno.errorcode.get(code or 0, "error")
    return ClientError(f"{during}_{name.lower()}", f"{during}: {exc}")


class Connection:
    """One open WebSocket. Call `run(on_message)` in a greenlet to read; send from anywhere."""

    __slots__ = ("sock", "buf", "_lock", "closed", "close_code", "_on_close", "bytes_in",
                 "_frag_op", "_frag", "tag")

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(leftover)
        # One writer at a time: a pong from the reader must not land inside a data frame.
        self._lock = Semaphore()
        self.closed = False
        self.close_code: int | None = None
        self.bytes_in = 0
        self._frag_op = 0
        self._frag: list[bytes] | None = None
        self.tag: object = None  # free slot for the scenario (e.g. the client index)

    def _send_frame(self, opcode: int, payload: bytes) -> int:
        frame = frames.build_frame(opcode, payload, mask=random.randbytes(4))
        with self._lock:
            self.sock.sendall(frame)
        return len(frame)

    def send_binary(self, payload: bytes) -> int:
        """Send one binary message; returns the bytes written on the wire."""
        return self._send_frame(frames.OP_BINARY, payload)

    def send_text(self, text: str) -> int:
        """Send one text message; returns the bytes written on the wire."""
        return self._send_frame(frames.OP_TEXT, text.encode("utf-8"))

    def send_json(self, obj: object) -> int:
        """Send a JSON text message (compact separators keep frames small)."""
        return self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_ping(self, payload: bytes = b"") -> int:
        """Send a ping; the server's pong comes back to `run`'s `on_pong`."""
        return self._send_frame(frames.OP_PING, payload)

    def run(self, on_message: Callable[[Connection, int, bytes], None],
            on_pong: Callable[[Connection, bytes], None] | None = None) -> None:
        """Read frames until the connection ends; data messages go to `on_message`.

        Returns normally after a close handshake; raises ClientError for anything else
        (reset, EOF without close frame, protocol errors).
        """
        sock = self.sock
        buf = self.buf
        while True:
            try:
                header = frames.parse_header(buf, _MAX_MESSAGE, require_mask=False)
            except frames.ProtocolError as exc:
                self.abort()
                raise ClientError("protocol", f"bad frame from server: {exc}") from None
            if header is None or len(buf) < header.size + header.length:
                try:
                    chunk = sock.recv(65536)
                except OSError as exc:
                    self.abort()
                    if self.closed:
                        return
                    raise classify_oserror(exc, "read") from None
                if not chunk:
                    was_closed = self.closed
                    self.abort()
                    if was_closed:
                        return
                    raise ClientError("eof", "server closed TCP without a close frame")
                self.bytes_in += len(chunk)
                buf += chunk
                continue
            end = header.size + header.length
            payload = bytes(buf[header.size:end])
            del buf[:end]
            if header.mask is not None:
                payload = frames.apply_mask(payload, header.mask)
            op = header.opcode
            if op == frames.OP_PING:
                try:
                    self._send_frame(frames.OP_PONG, payload)
                except OSError:
                    pass  # the read side will see the failure next
            elif op == frames.OP_PONG:
                if on_pong is not None:
                    on_pong(self, payload)
            elif op == frames.OP_CLOSE:
                code, _reason = (frames.parse_close_payload(payload) if len(payload) != 1
                                 else (frames.CLOSE_PROTOCOL_ERROR, ""))
                self.close_code = code
                if not self.closed:
                    # The server started the close: answer, then it closes TCP.
                    self.closed = True
                    try:
                        self._send_frame(frames.OP_CLOSE, payload[:2])
                    except OSError:
                        pass
                    self._wait_eof(2.0)
                    raise ClientError(f"closed_by_server_{code}",
                                      f"server closed the connection with {code} {_reason}")
                self._wait_eof(2.0)
                return
            elif op == frames.OP_CONT:
                if self._frag is None:
                    self.abort()
                    raise ClientError("protocol", "continuation frame without a start")
                self._frag.append(payload)
                if header.fin:
                    data = b"".join(self._frag)
                    self._frag = None
                    on_message(self, self._frag_op, data)
            elif not header.fin:
                self._frag_op = op
                self._frag = [payload]
            else:
                on_message(self, op, payload)

    def _wait_eof(self, timeout: float) -> None:
        """Let the server close TCP first, so TIME_WAIT (and its port) stays on its side."""
        try:
            with gevent.Timeout(timeout, False):
                while self.sock.recv(4096):
                    pass
        except OSError:
            pass
        self.abort()

    def close(self, code: int = frames.CLOSE_NORMAL) -> None:
        """Start the close handshake; the reader in `run` finishes it and returns."""
        if self.closed:
            return
        self.closed = True
        try:
            self._send_frame(frames.OP_CLOSE, frames.build_close_payload(code))
        except OSError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def _read_response(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """Read an HTTP response head: (status line, headers, bytes read past the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_HEADER:
            raise ClientError("handshake_bad_response", "HTTP response header too long")
        try:
            chunk = sock.recv(4096)
        except OSError as exc:
            raise classify_oserror(exc, "handshake") from None
        if not chunk:
            if data:
                break
            raise ClientError("handshake_eof", "server closed the connection during handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, rest


def open_socket(target: Target, source_ip: str | None, timeout: float) -> socket.socket:
    """A TCP connection to the target, from `source_ip` when given."""
    family = _stdsocket.AF_INET6 if ":" in target.host else _stdsocket.AF_INET
    sock = socket.socket(family, _stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        if source_ip:
            try:
                sock.setsockopt(_stdsocket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:
                pass  # not Linux: bind picks the port, with a smaller per-address range
            sock.bind((source_ip, 0))
        sock.settimeout(timeout)
        sock.connect((target.host, target.port))
    except OSError as exc:
        sock.close()
        raise classify_oserror(exc, "connect") from None
    except BaseException:
        sock.close()
        raise
    return sock


def connect(target: Target, *, source_ip: str | None = None, timeout: float = 10.0,
            headers: dict[str, str] | None = None) -> Connection:
    """Open a TCP connection and do the WebSocket upgrade; raise ClientError on failure.

    A non-101 answer raises `HandshakeRefused` carrying the server's status line.
    """
    sock = open_socket(target, source_ip, timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target.path} HTTP/1.1",
            f"Host: {target.host_header}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        except OSError as exc:
            raise classify_oserror(exc, "handshake") from None
        status, resp, leftover = _read_response(sock)
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            body = leftover[:200].decode("utf-8", "replace").strip()
            raise HandshakeRefused(status, body)
        if resp.get("sec-websocket-accept") != accept_key(key):
            raise ClientError("handshake_bad_accept",
                              "server's Sec-WebSocket-Accept does not match the key")
        sock.settimeout(None)
        return Connection(sock, leftover)
    except BaseException:
        sock.close()
        raise


def http_post_json(target: Target, path: str, body: dict[str, object],
                   headers: dict[str, str] | None = None,
                   timeout: float = 10.0) -> tuple[int, str, object]:
    """POST JSON to the server of `target`; returns (status, status line, decoded body)."""
    sock = open_socket(target, None, timeout)
    try:
        raw = json.dumps(body).encode()
        lines = [f"POST {path} HTTP/1.1", f"Host: {target.host_header}",
                 "Content-Type: application/json", f"Content-Length: {len(raw)}",
                 "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw)
        status, resp, rest = _read_response(sock)
        length = int(resp.get("content-length", "-1"))
        data = rest
        while length < 0 or len(data) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if "chunked" in resp.get("transfer-encoding", ""):
            data = _dechunk(data)
        code = int(status.split(" ")[1]) if status.count(" ") else 0
        try:
            decoded: object = json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            decoded = data[:200].decode("utf-8", "replace")
        return code, status, decoded
    except OSError as exc:
        raise classify_oserror(exc, "http") from None
    finally:
        sock.close()


def _dechunk(data: bytes) -> bytes:
    """Decode an HTTP/1.1 chunked body (enough for small JSON answers)."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


# Binary payloads used by echo/idle/churn: send time (wall clock, comparable across
# processes on one machine) and a sequence number, then padding up to --size.
STAMP = struct.Struct("!dI")


def stamped(sent_at: float, seq: int, size: int) -> bytes:
    """A binary payload of `size` bytes (at least the stamp) that starts with the stamp."""
    head = STAMP.pack(sent_at, seq)
    return head + b"\x00" * (size - len(head)) if size > len(head) else head


def read_stamp(payload: bytes) -> tuple[float, int]:
    """(send time, sequence) from a stamped payload."""
    return STAMP.unpack_from(payload)

