"""The object at environ["wsgi.websocket"]: a WebSocket over a gevent socket.

Same API as gevent-websocket's WebSocket (`receive()` -> str | bytes | None, `send(msg,
binary=None)`, `close(code, reason)`, `closed`, `origin`, `path`), so existing apps drop in.
What it adds: sends are serialised by a lock, so greenlets never interleave frames; close
frames carry code and reason and the handshake completes both ways; the peer's close code is
kept; limits come from Settings; pings are answered; protocol errors close with the right
code instead of vanishing into a `None`.

Memory matters (tens of thousands of idle connections): nothing is buffered while idle, and
the per-connection state is a handful of slots.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent import get_hub, getcurrent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError
from gevent.lock import Semaphore
from geventwebsocket.exceptions import WebSocketError

from wsapp.websocket.frames import (
    CLOSE_ABNORMAL,
    CLOSE_NO_STATUS,
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
from wsapp.websocket.sockio import GATHER_MIN, RECV_SIZE, read, send_all, send_now

log = logging.getLogger("wsapp.websocket.connection")


class Traffic:
    """Process-wide counters read by /metrics: plain ints, cheap on the per-message path."""

    __slots__ = ("messages_in", "bytes_in", "messages_out", "bytes_out", "closes",
                 "slow_consumer_drops")

    def __init__(self) -> None:
        self.messages_in = self.bytes_in = self.messages_out = self.bytes_out = 0
        self.slow_consumer_drops = 0
        self.closes: dict[int, int] = {}


TRAFFIC = Traffic()


class ConnectionClosed(WebSocketError):
    """Raised by send() on a closed connection; `code`/`reason` say how it closed."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code} {reason})".strip())
        self.code = code
        self.reason = reason


class WebSocket:
    """One server-side WebSocket connection (drop-in for geventwebsocket's WebSocket)."""

    __slots__ = ("environ", "protocol", "extensions", "close_code",
                 "close_reason", "sent_close_code", "last_seen", "ping_sent_at", "opened_at",
                 "_sock", "_receiver", "_pending", "_ppos", "last_message_size", "_send_lock",
                 "_reader", "_deflate",
                 "_accept", "_close_sent", "_dead", "_finished", "_done", "_close_timeout",
                 "_outbox", "_outbox_bytes", "_corked", "_cork_owner", "__weakref__")

    def __init__(self, sock: socket.socket, environ: dict, *, max_message_size: int,
                 max_fragments: int = 4096, deflate: Any = None, close_timeout: float = 3.0,
                 accept: Callable[[], None] | None = None, initial: bytes = b"",
                 protocol: str | None = None, extensions: str | None = None) -> None:
        self.environ = environ
        self.protocol = protocol
        self.extensions = extensions
        self.close_code: int | None = None  # the peer's, once its close frame arrived
        self.close_reason = ""
        self.sent_close_code: int | None = None
        self.opened_at = self.last_seen = time.monotonic()
        self.ping_sent_at = 0.0
        self._sock = sock
        self._receiver = Receiver(max_message_size, max_fragments, deflate=deflate)
        # Events parsed but not yet consumed, walked by index (a batch can hold hundreds).
        self._pending: list | tuple = self._receiver.feed(initial) if initial else ()
        self._ppos = 0
        self.last_message_size = 0  # payload bytes (UTF-8) of the last message received
        self._send_lock = Semaphore()
        self._reader = None  # the greenlet inside receive(), if any
        self._deflate = deflate
        self._accept = accept
        self._close_sent = False
        self._dead = False  # the TCP connection is gone (or being torn down)
        self._finished = False  # the socket is closed and the close was counted
        self._done: Event | None = None  # set when the transport is closed, for close()
        self._close_timeout = close_timeout
        self._outbox: deque | None = None  # frames waiting for a slow reader (fan-out only)
        self._outbox_bytes = 0
        self._corked: list | None = None  # replies held while the route works through a batch
        self._cork_owner = None  # the greenlet that got the last message from receive()

    # -- state -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once either side started closing or the transport died.

        The receiver stopping on a close frame or a protocol error does not count until
        receive() reaches that event: messages parsed before it are still answered, and the
        close that follows carries the right code (Autobahn 3.2, 4.1.3, 5.15).
        """
        return self._close_sent or self._dead

    @property
    def accepted(self) -> bool:
        """Whether the 101 response has been sent (it is sent on first use)."""
        return self._accept is None

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
        if self._accept is not None:
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
                    self.close_code, self.close_reason = value
                    self._peer_closed()
                    return None
                elif kind == EV_ERROR:
                    self._fail(value.code, value.reason)
                    return None
            if pending:  # consumed: let the batch (and its strings) go while we wait
                self._pending, self._ppos = (), 0
            if self._dead or self._receiver.closed:
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
        if self.closed:
            raise ConnectionClosed(self.close_code or self.sent_close_code, self.close_reason)
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
        if self.closed:
            raise ConnectionClosed(self.close_code or self.sent_close_code, self.close_reason)
        with self._send_lock:
            self._write(frame)
        TRAFFIC.messages_out += 1
        TRAFFIC.bytes_out += len(frame)

    def queue_frame(self, frame: bytes, max_backlog: int) -> bool:
        """Send pre-built frame bytes without ever blocking the caller (fan-out).

        Goes straight to the kernel when the socket has room; otherwise waits in a backlog
        drained by a greenlet that exists only while there is a backlog. Returns False, and
        queues nothing, when the backlog would pass `max_backlog` bytes: the caller cuts the
        slow reader off instead of letting memory grow.
        """
        if self.closed:
            return False
        if self._outbox is None and self._accept is None and self._corked is None and \
                self._send_lock.acquire(blocking=False):
            try:
                sent = send_now(self._sock, frame)
            except OSError:
                self._send_lock.release()
                self._transport_lost()
                return False
            TRAFFIC.messages_out += 1
            TRAFFIC.bytes_out += len(frame)
            if sent == len(frame):
                self._send_lock.release()
                return True
            rest = memoryview(frame)[sent:]
            self._outbox = deque((rest,))
            self._outbox_bytes = len(rest)
            gevent.spawn(self._flush_outbox, True)
            return True
        if self._outbox_bytes + len(frame) > max_backlog:
            return False
        if self._outbox is None:
            self._outbox = deque()
            self._outbox_bytes = 0
            gevent.spawn(self._flush_outbox, False)
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        TRAFFIC.messages_out += 1
        TRAFFIC.bytes_out += len(frame)
        return True

    @property
    def backlog(self) -> int:
        """Bytes queued toward this peer and not yet written."""
        return self._outbox_bytes

    def _flush_outbox(self, locked: bool) -> None:
        if not locked:
            self._send_lock.acquire()
        outbox = self._outbox
        try:
            if self._corked is not None:
                self._release_corked()  # to the outbox's front: they were sent earlier
            while outbox and not self._dead:
                item = outbox[0]
                send_all(self._sock, item)
                outbox.popleft()
                self._outbox_bytes -= len(item)
        except OSError:
            self._transport_lost()
        finally:
            self._outbox = None
            self._outbox_bytes = 0
            self._send_lock.release()

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong is consumed by receive() and clears `ping_sent_at`."""
        self.ping_sent_at = time.monotonic()
        self._send_control(OP_PING, payload)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self._dead or self._close_sent:
            return
        with self._send_lock:
            try:
                self._write(build_frame(opcode, payload))
            except ConnectionClosed:
                pass

    def _cork(self, frame: bytes) -> None:
        """Hold a reply while the route still has parsed messages to go through.

        A pipelining client sends many frames per read; answering each with its own syscall
        is most of the cost of a small echo. The held replies go out in one write before
        receive() waits for input, or as soon as the route yields to the hub any other way
        (a loop callback), so no reply waits longer than it would have anyway.
        """
        corked = self._corked
        if corked is None:
            corked = self._corked = []
            get_hub().loop.run_callback(self._uncork_soon)
        corked.append(frame)
        if len(corked) >= 64:
            self._write(b"")

    def _release_corked(self, data: bytes = b"") -> None:
        """Put held replies (and `data` after them) in line to be written next.

        Held replies predate any fan-out backlog (nothing is held while one exists), so
        they go to its front; without a backlog they are written at once.
        """
        corked, self._corked = self._corked, None
        held = b"".join(corked)
        if self._outbox is not None:
            self._outbox.appendleft(held)
            self._outbox_bytes += len(held)
            if data:
                self._outbox.append(data)
                self._outbox_bytes += len(data)
            return
        try:
            send_all(self._sock, held + data if data else held)
        except OSError as exc:
            self._transport_lost()
            raise ConnectionClosed(CLOSE_ABNORMAL, str(exc)) from None

    def _uncork_soon(self) -> None:
        # Runs in the hub, which must not block: hand the write to a greenlet.
        if self._corked is not None:
            gevent.spawn(self._uncork)

    def _uncork(self) -> None:
        with self._send_lock:
            if self._corked is not None:
                try:
                    self._write(b"")
                except ConnectionClosed:
                    pass

    def _write(self, data: bytes, tail: bytes = b"") -> None:
        """Write `data` (then `tail`) under the send lock; a dead socket marks the
        connection dead.

        While a fan-out backlog exists, the frame joins its end instead, so nothing ever
        overtakes frames already queued (the flusher may not hold the lock yet).
        """
        if self._accept is not None:
            self._do_accept()
        if self._corked is not None:
            self._release_corked(data + tail)
            data = tail = b""
        if self._dead:
            raise ConnectionClosed(self.close_code or CLOSE_ABNORMAL, "connection lost")
        if not data:
            return
        if self._outbox is not None:
            self._outbox.append(data + tail)
            self._outbox_bytes += len(data) + len(tail)
            return
        try:
            send_all(self._sock, data, tail)
        except OSError as exc:
            self._transport_lost()
            raise ConnectionClosed(CLOSE_ABNORMAL, str(exc)) from None

    def _ensure_accepted(self) -> None:
        with self._send_lock:
            if self._accept is not None:
                self._do_accept()

    def _do_accept(self) -> None:
        accept, self._accept = self._accept, None
        try:
            accept()
        except OSError:
            self._transport_lost()

    # -- closing -----------------------------------------------------------------------

    def close(self, code: int = CLOSE_NORMAL, reason: str | bytes = "") -> None:
        """Start (or finish) the closing handshake, then close the TCP connection.

        Waits up to close_timeout for the peer's close frame; another greenlet blocked in
        receive() sees that frame and returns None.
        """
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if self._dead:
            return
        if self._accept is not None:
            self._ensure_accepted()
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
        if self._dead:
            return
        with gevent.Timeout(send_timeout, False):
            self._send_close(code, reason)
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        self._abort()

    def _send_close(self, code: int | None, reason: str) -> None:
        if self._close_sent or self._dead:
            return
        self._close_sent = True
        self.sent_close_code = code if code is not None else CLOSE_NO_STATUS
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
            while not self._dead:
                for kind, value in self._pending[self._ppos:]:
                    if kind == EV_CLOSE:
                        self.close_code, self.close_reason = value
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

    def _peer_closed(self) -> None:
        """The peer's close frame arrived: answer it (unless we started) and close TCP."""
        code = self.close_code
        self._send_close(None if code == CLOSE_NO_STATUS else code, "")
        self._shutdown()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame with `code`, then close TCP."""
        log_soon(log, logging.INFO, "closing %s: %d %s", self.path, code, reason)
        self._send_close(code, reason)
        self.close_code = CLOSE_ABNORMAL
        self.close_reason = reason
        self._shutdown(linger=True)

    def _transport_lost(self) -> None:
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        self._abort()

    def _shutdown(self, linger: bool = False) -> None:
        """Close TCP after the close handshake; with `linger`, drain first so unread input
        does not turn our FIN into an RST that could destroy the close frame in flight."""
        if self._dead:
            return
        self._dead = True
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            if linger:
                sock.settimeout(min(self._close_timeout, 1.0))
                for _ in range(64):
                    if not sock.recv(RECV_SIZE):
                        break
        except OSError:
            pass
        self._abort()

    def _abort(self) -> None:
        self._dead = True
        if self._finished:
            return
        self._finished = True
        # Count the code this connection ended with: ours if we sent one (we echo the
        # peer's), else 1006 for a connection that just dropped.
        code = self.sent_close_code or self.close_code or CLOSE_ABNORMAL
        TRAFFIC.closes[code] = TRAFFIC.closes.get(code, 0) + 1
        try:
            self._sock.close()
        except OSError:
            pass
        if self._done is not None:
            self._done.set()
