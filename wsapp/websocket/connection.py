"""The object at environ["wsgi.websocket"]: a WebSocket over a gevent socket.

Same API as gevent-websocket's WebSocket (`receive()` -> str | bytes | None, `send(msg,
binary=None)`, `close(code, reason)`, `closed`, `origin`, `path`), so existing apps drop in.
What it adds: sends are serialised by a lock, so greenlets never interleave frames; close
frames carry code and reason and the handshake completes both ways; the peer's close code is
kept; limits come from the handler's options; pings are answered; protocol errors close with
the right code instead of vanishing into a `None`. Where the connection is in its life
(CONNECTING, OPEN, CLOSING, CLOSED), who closed first and the codes both ways are the sans-I/O
`ConnectionState` it is built on (wsapp.websocket.state); how bytes reach the socket (the
send lock, corked replies, the fan-out backlog, tearing TCP down) is `Transport`
(wsapp.websocket.transport). This module speaks the protocol on top of them.

Memory matters (tens of thousands of idle connections): nothing is buffered while idle, and
the per-connection state is a handful of slots.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError

from wsapp.websocket.exceptions import ConnectionClosed
from wsapp.websocket.frames import (
    CLOSE_NORMAL,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    build_close_payload,
    build_frame,
)
from wsapp.websocket.logsoon import log_soon
from wsapp.websocket.protocol import (
    EV_CLOSE,
    EV_ERROR,
    EV_MESSAGE,
    EV_PING,
    EV_PONG,
    Receiver,
    encode_parts,
)
from wsapp.websocket.sockio import GATHER_MIN, RECV_SIZE, read
from wsapp.websocket.state import CLOSED, CLOSING, CONNECTING
from wsapp.websocket.traffic import TRAFFIC
from wsapp.websocket.transport import Transport

__all__ = ["TRAFFIC", "ConnectionClosed", "WebSocket"]  # the first two also live elsewhere

log = logging.getLogger("wsapp.websocket.connection")


class WebSocket(Transport):
    """One server-side WebSocket connection (drop-in for geventwebsocket's WebSocket)."""

    __slots__ = ("environ", "protocol", "extensions", "last_seen", "ping_sent_at", "opened_at",
                 "_receiver", "_pending", "_ppos", "last_message_size", "_reader", "_deflate",
                 "_cork_owner", "__weakref__")

    def __init__(self, sock: socket.socket, environ: dict, *, max_message_size: int,
                 max_fragments: int = 4096, deflate: Any = None, close_timeout: float = 3.0,
                 accept: Callable[[], None] | None = None, initial: bytes = b"",
                 protocol: str | None = None, extensions: str | None = None) -> None:
        super().__init__(sock, accept=accept, close_timeout=close_timeout)
        self.environ = environ
        self.protocol = protocol
        self.extensions = extensions
        self.opened_at = self.last_seen = time.monotonic()
        self.ping_sent_at = 0.0
        self._receiver = Receiver(max_message_size, max_fragments, deflate=deflate)
        # Events parsed but not yet consumed, walked by index (a batch can hold hundreds).
        self._pending: list | tuple = self._receiver.feed(initial) if initial else ()
        self._ppos = 0
        self.last_message_size = 0  # payload bytes (UTF-8) of the last message received
        self._reader = None  # the greenlet inside receive(), if any
        self._deflate = deflate
        self._cork_owner = None  # the greenlet that got the last message from receive()

    # -- state -------------------------------------------------------------------------

    # `closed` (ConnectionState): the receiver stopping on a close frame or a protocol error
    # does not count until receive() reaches that event: messages parsed before it are still
    # answered, and the close that follows carries the right code (Autobahn 3.2, 4.1.3, 5.15).

    @property
    def receiving(self) -> bool:
        """Whether a greenlet is blocked in receive() (so pongs would be seen)."""
        return self._reader is not None

    @property
    def path(self) -> str | None:
        """The request path the WebSocket was opened on."""
        return self.environ.get("PATH_INFO")

    @property
    def origin(self) -> str | None:
        """The browser's Origin header (None from non-browser clients)."""
        return self.environ.get("HTTP_ORIGIN")

    @property
    def peer(self) -> str:
        """host:port of the client, for logs."""
        env = self.environ
        return f"{env.get('REMOTE_ADDR')}:{env.get('REMOTE_PORT')}"

    @property
    def current_app(self) -> Any:
        """gevent-websocket compatibility: apps sometimes look this up; there is none."""
        return None

    # -- receiving ---------------------------------------------------------------------

    def receive(self) -> str | bytes | None:
        """The next message (str for text, bytes for binary), or None once closed."""
        if self.state == CONNECTING:
            self._ensure_accepted()
        # One reader at a time, as with any gevent socket; a lock would only queue a second
        # reader to get messages in an order neither of them can rely on.
        if self._reader is not None:
            raise ConcurrentObjectUseError(f"receive() is already waiting in {self._reader!r}")
        self._reader = getcurrent()
        try:
            return self._receive()
        finally:
            self._reader = None

    def read_message(self) -> str | bytes | None:
        """Alias kept for gevent-websocket compatibility."""
        return self.receive()

    def _receive(self) -> str | bytes | None:
        while True:
            pending = self._pending
            while self._ppos < len(pending):
                kind, value = pending[self._ppos]
                self._ppos += 1
                if kind == EV_MESSAGE:
                    size = len(value) if type(value) is bytes or value.isascii() \
                        else len(value.encode("utf-8"))
                    self.last_message_size = size
                    TRAFFIC.messages_in += 1
                    TRAFFIC.bytes_in += size
                    self._cork_owner = getcurrent()
                    return value
                if kind == EV_PING:
                    self._send_control(OP_PONG, value)
                elif kind == EV_PONG:
                    self.ping_sent_at = 0.0
                elif kind == EV_CLOSE:
                    self._peer_closed(*value)
                    return None
                elif kind == EV_ERROR:
                    self._fail(value.code, value.reason)
                    return None
            if pending:  # consumed: let the batch (and its strings) go while we wait
                self._pending, self._ppos = (), 0
            if self.state == CLOSED or self._receiver.closed:
                return None
            if self._corked is not None:
                self._uncork()  # about to wait for input: everything we owe goes out first
            try:
                data = read(self._sock)
            except OSError:
                data = b""
            if not data:
                self._transport_lost()
                return None
            self.last_seen = time.monotonic()
            self._pending = self._receiver.feed(data)
            self._ppos = 0

    # -- sending -----------------------------------------------------------------------

    def send(self, message: str | bytes, binary: bool | None = None) -> None:
        """Send one message; text for str unless binary=True, binary for bytes."""
        if binary is None:
            binary = not isinstance(message, str)
        elif not binary and not isinstance(message, str):
            message = bytes(message).decode("utf-8")
        if self.state >= CLOSING:
            raise self.closed_error()
        with self._send_lock:
            # Encoding sits inside the lock: a shared deflate context must see messages in
            # the order they hit the wire.
            header, payload = encode_parts(message, binary, self._deflate)
            size = len(header) + len(payload)
            if size >= GATHER_MIN:
                self._write(header, payload)
            elif self._ppos < len(self._pending) and self._outbox is None and \
                    self._cork_owner is getcurrent():
                self._cork(header + payload)
            else:
                self._write(header + payload)
        TRAFFIC.messages_out += 1
        TRAFFIC.bytes_out += size

    def send_frame(self, frame: bytes) -> None:
        """Send pre-built frame bytes (fan-out builds a frame once for many connections)."""
        if self.state >= CLOSING:
            raise self.closed_error()
        with self._send_lock:
            self._write(frame)
        TRAFFIC.messages_out += 1
        TRAFFIC.bytes_out += len(frame)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong is consumed by receive() and clears `ping_sent_at`."""
        self.ping_sent_at = time.monotonic()
        self._send_control(OP_PING, payload)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self.state >= CLOSING:
            return
        with self._send_lock:
            try:
                self._write(build_frame(opcode, payload))
            except ConnectionClosed:
                pass

    # -- closing -----------------------------------------------------------------------

    def close(self, code: int = CLOSE_NORMAL, reason: str | bytes = "") -> None:
        """Start (or finish) the closing handshake, then close the TCP connection.

        Waits up to close_timeout for the peer's close frame; another greenlet blocked in
        receive() sees that frame and returns None.
        """
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if self.state == CLOSED:
            return
        self._send_close(code, reason)
        if self._receiver.closed:
            self._shutdown()
            return
        if self._reader is None:
            self._reader = getcurrent()
            try:
                self._drain_until_close()
            finally:
                self._reader = None
        else:
            done = self._done = self._done or Event()
            if not done.wait(self._close_timeout):
                self._abort()

    def terminate(self, code: int, reason: str, send_timeout: float = 1.0) -> None:
        """Close now without waiting for the peer (dead peer, shutdown stragglers)."""
        if self.state == CLOSED:
            return
        with gevent.Timeout(send_timeout, False):
            self._send_close(code, reason)
        self.dropped()
        self._abort()

    def _send_close(self, code: int | None, reason: str) -> None:
        if self.state == CONNECTING:
            self._ensure_accepted()  # the 101 goes before any frame
        if not self.close_sent(code):
            return
        try:
            with self._send_lock:
                self._write(build_frame(OP_CLOSE, build_close_payload(code, reason)))
        except ConnectionClosed:
            pass

    def _drain_until_close(self) -> None:
        """After our close frame: discard messages until the peer's close frame or timeout."""
        deadline = time.monotonic() + self._close_timeout
        sock = self._sock
        try:
            while self.state != CLOSED:
                for kind, value in self._pending[self._ppos:]:
                    if kind == EV_CLOSE:
                        self.close_received(*value)
                        self._shutdown()
                        return
                    if kind == EV_ERROR:
                        self._abort()
                        return
                self._pending, self._ppos = (), 0
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                data = sock.recv(RECV_SIZE)
                if not data:
                    break
                self._pending, self._ppos = self._receiver.feed(data), 0
        except OSError:
            pass
        self._abort()

    def _peer_closed(self, code: int, reason: str) -> None:
        """The peer's close frame arrived: answer it (unless we started) and close TCP."""
        self._send_close(self.close_received(code, reason), "")
        self._shutdown()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame with `code`, then close TCP."""
        log_soon(log, logging.INFO, "closing %s: %d %s", self.path, code, reason)
        self._send_close(code, reason)
        self.failed(reason)
        self._shutdown(linger=True)

