"""The object at environ["wsgi.websocket"]: a WebSocket over a gevent socket.

gevent-websocket 0.10.1's WebSocket, method for method, so existing apps drop in: `receive()`
returns str | bytes, None once (the call that sees the connection end), then raises
WebSocketError; `send(message, binary=None)`, `send_frame(message, opcode)`, `close(code=1000,
message=b'')`, `closed`, `origin`, `path`, `environ`, `handler`; the rest of 0.10.1's surface
(version, protocol, stream, raw_read/raw_write, read_frame, handle_*, the UTF-8 validator...)
is the mixin in wsapp.websocket.compat, and docs/compat.md lists every item.
What it fixes: sends are serialised by a lock, so greenlets never interleave frames; close
frames carry code and reason and the handshake completes both ways; the peer's close code is
kept; limits come from the handler's options; pings are answered; protocol errors close with
the right code instead of vanishing into a `None`. Where the connection is in its life
(CONNECTING, OPEN, CLOSING, CLOSED), who closed first and the codes both ways are the sans-I/O
`ConnectionState` it is built on (wsapp.websocket.state); how bytes reach the socket (the
send lock, corked replies, the fan-out backlog, tearing TCP down) is `Transport`
(wsapp.websocket.transport). This module speaks the protocol on top of them.

Memory matters (tens of thousands of idle connections): nothing is buffered while idle, and
the per-connection state is a handful of slots.

Fairness (wsapp.websocket.fairness): receive() yields to the other greenlets once the
connection has used its turn (`Pace.turn_bytes` read, or `turn_messages` messages at
`message_cost` each), even while its socket has data, so one peer that floods cannot freeze
the process; `limit_rate()` installs a message budget that drops what is over it from the
frame headers alone, before it costs anything, and closes with 1008 a peer that insists.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError

from wsapp.websocket.compat import GeventWebSocketAPI
from wsapp.websocket.exceptions import ConnectionClosed
from wsapp.websocket.fairness import DEFAULT_PACE, MessageBudget, Pace
from wsapp.websocket.frames import (
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_close_payload,
    build_frame,
)
from wsapp.websocket.logsoon import log_soon
from wsapp.websocket.protocol import (
    EV_CLOSE,
    EV_DROPPED,
    EV_ERROR,
    EV_MESSAGE,
    EV_PING,
    EV_PONG,
    Receiver,
    encode_parts,
)
from wsapp.websocket.protocol import Event as ParsedEvent
from wsapp.websocket.sockio import GATHER_MIN, RECV_SIZE, read
from wsapp.websocket.state import CLOSED, CLOSING, CONNECTING, OPEN
from wsapp.websocket.traffic import TRAFFIC
from wsapp.websocket.transport import Transport

__all__ = ["TRAFFIC", "ConnectionClosed", "WebSocket"]  # the first two also live elsewhere

log = logging.getLogger("wsapp.websocket.connection")

# Stands in for a connection's parser once the app has been told that the connection ended
# (receive() returned None, or the app closed it): the parser's memory goes, and `_receiver
# is _TOLD` is the flag receive() goes by, in no slot of its own.
_TOLD = Receiver(1)
_TOLD.closed = True


class WebSocket(Transport, GeventWebSocketAPI):
    """One server-side WebSocket connection (drop-in for geventwebsocket's WebSocket)."""

    # `handler` fills the one slot free in this object's 256-byte allocation: it costs nothing.
    __slots__ = ("environ", "handler", "subprotocol", "extensions", "last_seen", "ping_sent_at",
                 "opened_at", "_receiver", "_pending", "_ppos", "last_message_size", "_reader",
                 "_deflate", "_cork_owner", "_turn", "__weakref__")

    def __init__(self, sock: socket.socket, environ: dict, *, max_message_size: int,
                 max_fragments: int = 4096, deflate: Any = None, close_timeout: float = 3.0,
                 accept: Callable[[], None] | None = None, initial: bytes = b"",
                 subprotocol: str | None = None, extensions: str | None = None,
                 handler: Any = None, pace: Pace = DEFAULT_PACE) -> None:
        super().__init__(sock, accept=accept, close_timeout=close_timeout, pace=pace)
        self.environ = environ
        self.handler = handler  # the WSGI handler serving it (gevent-websocket's ws.handler)
        self.subprotocol = subprotocol  # the one agreed (`protocol` is the header asked for)
        self.extensions = extensions
        self.opened_at = self.last_seen = time.monotonic()
        self.ping_sent_at = 0.0
        self._receiver = Receiver(max_message_size, max_fragments, deflate=deflate)
        self._receiver.work_limit = pace.turn_bytes
        # Events parsed but not yet consumed, walked by index (a batch can hold hundreds).
        self._pending: list | tuple = self._receiver.feed(initial) if initial else ()
        self._ppos = 0
        self.last_message_size = 0  # payload bytes (UTF-8) of the last message received
        self._reader = None  # the greenlet inside receive(), if any
        self._deflate = deflate
        self._cork_owner = None  # the greenlet that got the last message from receive()
        self._turn = pace.turn_bytes  # work left before this connection lets others run

    # -- state -------------------------------------------------------------------------

    # `closed` (ConnectionState): the receiver stopping on a close frame or a protocol error
    # does not count until receive() reaches that event: messages parsed before it are still
    # answered, and the close that follows carries the right code (Autobahn 3.2, 4.1.3, 5.15).

    def limit_rate(self, messages_per_s: float, bytes_per_s: float, max_dropped: int = 0,
                   on_drop: Callable[[bytes], None] | None = None) -> MessageBudget:
        """Drop incoming messages over `messages_per_s` or `bytes_per_s` (bursts of 2x) from
        their frame headers, before their payload is unmasked, inflated or decoded: receive()
        never returns them, and `on_drop(tail)` is called instead (tail: up to 512 last
        payload bytes when known cheaply, else b""). More than `max_dropped` drops within
        10 s close the connection with 1008 (0: never). Returns the budget installed."""
        budget = MessageBudget(messages_per_s, bytes_per_s, max_dropped, on_drop)
        self._receiver.budget = budget
        return budget

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

    # -- receiving ---------------------------------------------------------------------

    def receive(self) -> str | bytes | None:
        """The next message (str for text, bytes for binary); None once the connection has
        ended, from the first call that finds it so (the peer closed, broke the protocol or
        dropped; the server closed it: shutdown, heartbeat, a slow reader cut off).

        Called again after that None, or after the app's own close(), it raises
        WebSocketError (our ConnectionClosed), as gevent-websocket does: a loop that ignores
        the None still ends.
        """
        if self.state != OPEN and self._reading_outside_open():
            return None
        # One reader at a time, as with any gevent socket; a lock would only queue a second
        # reader to get messages in an order neither of them can rely on.
        if self._reader is not None:
            raise ConcurrentObjectUseError(f"receive() is already waiting in {self._reader!r}")
        self._reader = getcurrent()
        try:
            return self._receive()
        finally:
            self._reader = None

    def _reading_outside_open(self) -> bool:
        """A receive() starts outside OPEN: send the 101 first (CONNECTING). On a closed
        connection, True if the app has not been told yet (receive() returns None now),
        WebSocketError if it has."""
        state = self.state
        if state == CONNECTING:
            self._ensure_accepted()
        elif state == CLOSED:
            if self._receiver is _TOLD:
                raise self._closed_now()
            return self._told()
        return False

    def _told(self) -> bool:
        """The app knows the connection has ended: receive() raises from now on, and the
        parser and any unread input are let go. Returns True."""
        self._receiver = _TOLD
        self._pending, self._ppos = (), 0
        return True

    def _claim_reader(self) -> None:
        """Become the one greenlet reading, for a read that has no None to return (receive()
        does the same inline: it is hot)."""
        if self.state == CONNECTING:
            self._ensure_accepted()
        if self.state == CLOSED:
            raise self._closed_now()
        if self._reader is not None:
            raise ConcurrentObjectUseError(f"a read is already waiting in {self._reader!r}")
        self._reader = getcurrent()

    def _closed_now(self) -> ConnectionClosed:
        """The error for using a closed connection, after telling the app's `current_app`
        (gevent-websocket calls its on_close() at these points)."""
        self.current_app.on_close("Connection is already closed")
        return self.closed_error()

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
                    self._turn -= self._pace.message_cost
                    if self._turn <= 0:
                        self._yield_turn()
                    self._cork_owner = getcurrent()
                    return value
                if kind == EV_DROPPED:
                    self._dropped(value)
                    continue
                if kind == EV_PING:
                    self._send_control(OP_PONG, value)
                elif kind == EV_PONG:
                    self.ping_sent_at = 0.0
                elif kind == EV_CLOSE:
                    self._peer_closed(*value)
                    self._told()
                    return None
                elif kind == EV_ERROR:
                    self._fail(value.code, value.reason)
                    self._told()
                    return None
            if pending:  # consumed: let the batch (and its strings) go while we wait
                self._pending, self._ppos = (), 0
            if not self._fill():
                self._told()
                return None

    def _fill(self) -> bool:
        """Wait for input and parse it into `_pending`; False when no more will come."""
        if self.state == CLOSED:
            return False
        if self._receiver.closed:  # read_frame() handed the close frame out, unanswered
            self._peer_closed(self.close_code or CLOSE_NO_STATUS, self.close_reason)
            return False
        if self._corked is not None:
            self._uncork()  # about to wait for input: everything we owe goes out first
        if self._turn <= 0 or self._receiver.paused:
            self._yield_turn()
            if self.state == CLOSED:
                return False
        if self._receiver.paused:  # the last read is not all parsed yet: go on with it
            self._pending = self._receiver.feed(b"")
            self._ppos = 0
            return True
        try:
            data = read(self._sock)
        except OSError:
            data = b""
        if not data:
            self._transport_lost()
            self.current_app.on_close("Connection closed")  # as gevent-websocket tells it
            return False
        self.last_seen = time.monotonic()
        self._turn -= len(data)
        self._pending = self._receiver.feed(data)
        self._ppos = 0
        return True

    def _yield_turn(self) -> None:
        """This connection has had its turn: let every other greenlet run (and the hub poll
        for I/O) before it goes on, even though its socket may have more data already."""
        self._turn = self._pace.turn_bytes
        if self._corked is not None:
            self._uncork()  # what we owe goes out now, not from a greenlet spawned for it
        gevent.sleep(0)

    def _dropped(self, tail: bytes) -> None:
        """A message over the budget was dropped: tell the budget's owner."""
        budget = self._receiver.budget
        if budget is not None and budget.on_drop is not None:
            budget.on_drop(tail)

    def _next_event(self) -> ParsedEvent | None:
        """The next parsed event as it is, reading as needed (read_frame's source); None
        when no more will come. The caller holds the reader's place."""
        while True:
            while self._ppos >= len(self._pending):
                self._pending, self._ppos = (), 0
                if not self._fill():
                    return None
            event = self._pending[self._ppos]
            self._ppos += 1
            if event[0] != EV_DROPPED:
                return event
            self._dropped(cast(bytes, event[1]))

    def _raw_read(self, size: int) -> bytes:
        """Up to `size` bytes straight from the socket (gevent-websocket's raw_read): fewer
        only at the end of input. Bytes already parsed into messages are not among them."""
        self._claim_reader()
        chunks = []
        try:
            while size > 0:
                data = self._sock.recv(size)
                if not data:
                    break
                chunks.append(data)
                size -= len(data)
        except OSError:
            pass
        finally:
            self._reader = None
        return b"".join(chunks)

    # -- sending -----------------------------------------------------------------------

    def send(self, message: str | bytes, binary: bool | None = None) -> None:
        """Send one message; text for str unless binary=True, binary for bytes."""
        if binary is None:
            binary = not isinstance(message, str)
        elif not binary and not isinstance(message, str):
            message = bytes(message).decode("utf-8")
        if self.state >= CLOSING:
            raise self._closed_now()
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

    def send_frame(self, message: str | bytes | None, opcode: int) -> None:
        """Send one frame with `opcode` and `message` as its payload (gevent-websocket's
        send_frame): text and binary are messages as send() makes them; str is UTF-8 for
        any opcode; a close payload starts the closing handshake like close() does (the
        code is its first two bytes) without waiting for the peer. WebSocketError once
        the connection is closing."""
        if opcode == OP_TEXT or opcode == OP_BINARY:
            self.send("" if message is None else message, binary=opcode == OP_BINARY)
            return
        if self.state >= CLOSING:
            raise self._closed_now()
        payload = message.encode("utf-8") if isinstance(message, str) else bytes(message or b"")
        if opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self._send_close_payload(code, payload)
            return
        if opcode == OP_PING:
            self.ping_sent_at = time.monotonic()
        with self._send_lock:
            self._write(build_frame(opcode, payload))

    def send_frame_bytes(self, frame: bytes) -> None:
        """Send pre-built frame bytes, waiting while the socket is full (a frame built once
        for many connections; `queue_frame` is the variant that never waits)."""
        if self.state >= CLOSING:
            raise self.closed_error()
        with self._send_lock:
            self._write(frame)
        TRAFFIC.messages_out += 1
        TRAFFIC.bytes_out += len(frame)

    def _raw_write(self, data: bytes) -> None:
        """Write bytes as they are, in turn with every other send (gevent-websocket's
        raw_write); WebSocketError when the socket is dead."""
        with self._send_lock:
            self._write(data)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong is consumed by receive() and clears `ping_sent_at`."""
        self.ping_sent_at = time.monotonic()
        self._send_control(OP_PING, payload)

    def handle_pong(self, header: Any, payload: bytes) -> None:
        """A pong arrived (gevent-websocket's hook, for frames from read_frame()): the peer
        is alive, and the heartbeat stops waiting for one."""
        self.ping_sent_at = 0.0

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self.state >= CLOSING:
            return
        with self._send_lock:
            try:
                self._write(build_frame(opcode, payload))
            except ConnectionClosed:
                pass

    # -- closing -----------------------------------------------------------------------

    def close(self, code: int = CLOSE_NORMAL, message: str | bytes | None = b"") -> None:
        """The app closes: the closing handshake with `code` and `message` (the reason),
        then TCP is closed; on a closed connection nothing happens. Either way the app
        knows, so receive() raises from now on (a greenlet blocked in it when the peer's
        close frame arrives still gets its None).

        Waits up to close_timeout for the peer's close frame.
        """
        if self.state == CLOSED:
            self.current_app.on_close("Connection is already closed")
        else:
            reason = message.decode("utf-8", "replace") if isinstance(message, bytes) \
                else message
            self.end(code, reason or "")
        self._told()

    def end(self, code: int, reason: str = "") -> None:
        """The server closes (shutdown, policy): the closing handshake like close(), but the
        app has not been told, so the route's next receive() returns None."""
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
        """Close now without waiting for the peer (dead peer, shutdown stragglers); the
        route's next receive() returns None."""
        if self.state == CLOSED:
            return
        with gevent.Timeout(send_timeout, False):
            self._send_close(code, reason)
        self.dropped()
        self._abort()

    def _send_close(self, code: int | None, reason: str) -> None:
        self._send_close_payload(code, build_close_payload(code, reason))

    def _send_close_payload(self, code: int | None, payload: bytes) -> None:
        if self.state == CONNECTING:
            self._ensure_accepted()  # the 101 goes before any frame
        if not self.close_sent(code):
            return
        try:
            with self._send_lock:
                self._write(build_frame(OP_CLOSE, payload))
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

    def _peer_closed(self, code: int, reason: str, reason_back: str = "") -> None:
        """The peer's close frame arrived: answer it (unless we started) and close TCP."""
        self._send_close(self.close_received(code, reason), reason_back)
        self._shutdown()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame with `code`, then close TCP."""
        log_soon(log, logging.INFO, "closing %s: %d %s", self.path, code, reason)
        self._send_close(code, reason)
        self.failed(reason)
        self._shutdown(linger=True)

