"""The sending half and the socket of one WebSocket connection: the base of `WebSocket`.

Everything written to a connection goes through `_write()` under the send lock, in order:
the 101 on first use (a route that answers with HTTP instead never upgrades), replies held
while the route works through a batch of pipelined messages ("corked": one write instead of
one per reply), and the fan-out backlog (`queue_frame`: a publisher never waits for a slow
reader; the reader is cut off past `max_backlog` bytes instead; `put` is the same backlog for
a sender that may wait a little for room, such as a history replay). Every wait for the peer
to take bytes is bounded by the server's send timeout (`Pace`): a peer that stops reading is
cut off however the bytes were sent. It ends with tearing TCP down once, counting the code
the connection ended with.

Kept apart from connection.py, which speaks the protocol (messages, pings, the closing
handshake) on top of this.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable

import gevent
from gevent import get_hub
from gevent.event import Event
from gevent.lock import Semaphore

from wsapp.websocket.exceptions import ConnectionClosed
from wsapp.websocket.fairness import DEFAULT_PACE, Pace
from wsapp.websocket.frames import CLOSE_ABNORMAL
from wsapp.websocket.logsoon import log_soon
from wsapp.websocket.sockio import RECV_SIZE, send_all, send_now
from wsapp.websocket.state import CLOSED, CLOSING, CONNECTING, OPEN, ConnectionState, Trigger
from wsapp.websocket.traffic import TRAFFIC

log = logging.getLogger("wsapp.websocket.transport")


class Transport(ConnectionState):
    """A connection's socket, its send lock and what waits to be written on it."""

    __slots__ = ("_sock", "_send_lock", "_accept", "_done", "_close_timeout", "_outbox",
                 "_outbox_bytes", "_corked", "_pace")

    def __init__(self, sock: socket.socket, *, accept: Callable[[], None] | None,
                 close_timeout: float, pace: Pace = DEFAULT_PACE) -> None:
        super().__init__(connecting=accept is not None)
        self._sock = sock
        self._send_lock = Semaphore()
        self._accept = accept  # sends the 101; held until the route first uses the connection
        self._done: Event | None = None  # set when the transport is closed, for close()
        self._close_timeout = close_timeout
        self._outbox: deque | None = None  # frames waiting for a slow reader (fan-out only)
        self._outbox_bytes = 0
        self._corked: list[bytes] | None = None  # replies held while the route is in a batch
        self._pace = pace  # the server's turn budget and send timeout (shared, immutable)

    @property
    def accepted(self) -> bool:
        """Whether the 101 response has been sent (it is sent on first use)."""
        return self._accept is None

    def queue_frame(self, frame: bytes, max_backlog: int) -> bool:
        """Send pre-built frame bytes without ever blocking the caller (fan-out).

        Goes straight to the kernel when the socket has room; otherwise waits in a backlog
        drained by a greenlet that exists only while there is a backlog. Returns False, and
        queues nothing, when the backlog would pass `max_backlog` bytes: the caller cuts the
        slow reader off instead of letting memory grow.
        """
        if self.state >= CLOSING:
            return False
        if self._outbox is None and self.state == OPEN and self._corked is None and \
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

    def put(self, frame: bytes, max_backlog: int, timeout: float | None = None) -> bool:
        """`queue_frame` for a sender that may wait: while the backlog has no room for
        `frame`, wait for it to drain, up to `timeout` seconds (default: the send timeout).
        False, with nothing queued, when it did not drain in time or the connection closed:
        the caller cuts the reader off. So a replay goes through the same bounded backlog
        as fan-out, and holds at most `max_backlog` bytes toward a peer that does not read.
        """
        if self.queue_frame(frame, max_backlog):
            return True
        wait = self._pace.send_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while self.state < CLOSING:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # Room appears as the flusher writes; polling keeps this off the hot path (no
            # event per connection) and a replay that waits is already slow.
            gevent.sleep(min(0.02, left))
            if self.queue_frame(frame, max_backlog):
                return True
        return False

    @property
    def stalled(self) -> bool:
        """Whether bytes are waiting for the peer to take them (a backlog, or a send in
        progress): a peer that is pinged then is judged on that, not on its pong."""
        return self._outbox is not None or self._send_lock.locked()

    @property
    def backlog(self) -> int:
        """Bytes queued toward this peer and not yet written."""
        return self._outbox_bytes

    def _flush_outbox(self, locked: bool) -> None:
        if not locked:
            self._send_lock.acquire()
        outbox = self._outbox
        try:
            if self.state == CONNECTING:
                self._do_accept()  # a frame queued before the route's first use
            if self._corked is not None:
                self._release_corked()  # to the outbox's front: they were sent earlier
            while outbox and self.state != CLOSED:
                item = outbox[0]
                send_all(self._sock, item, b"", self._pace.write_timeout)
                outbox.popleft()
                self._outbox_bytes -= len(item)
        except OSError as exc:
            self._send_failed(exc)
        finally:
            self._outbox = None
            self._outbox_bytes = 0
            self._send_lock.release()

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
        held = b"".join(corked or ())
        if self._outbox is not None:
            self._outbox.appendleft(held)
            self._outbox_bytes += len(held)
            if data:
                self._outbox.append(data)
                self._outbox_bytes += len(data)
            return
        try:
            send_all(self._sock, held + data if data else held, b"", self._pace.write_timeout)
        except OSError as exc:
            self._send_failed(exc)
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
        if self.state == CONNECTING:
            self._do_accept()
        if self._corked is not None:
            self._release_corked(data + tail)
            data = tail = b""
        if self.state == CLOSED:
            raise ConnectionClosed(self.close_code or CLOSE_ABNORMAL, "connection lost")
        if not data:
            return
        if self._outbox is not None:
            self._outbox.append(data + tail)
            self._outbox_bytes += len(data) + len(tail)
            return
        try:
            send_all(self._sock, data, tail, self._pace.write_timeout)
        except OSError as exc:
            self._send_failed(exc)
            raise ConnectionClosed(CLOSE_ABNORMAL, str(exc)) from None

    def _ensure_accepted(self) -> None:
        with self._send_lock:
            if self.state == CONNECTING:
                self._do_accept()

    def _do_accept(self) -> None:
        if not self.opened():
            return  # refused or lost before it opened: no 101 any more
        accept, self._accept = self._accept, None
        try:
            if accept is not None:
                accept()
        except OSError:
            self._transport_lost()

    def _send_failed(self, exc: OSError) -> None:
        """A write failed: the socket is dead, or the peer took nothing for send_timeout."""
        if isinstance(exc, TimeoutError) and self.state != CLOSED:
            log_soon(log, logging.INFO, "send timeout: %s (%d bytes queued); closing", exc,
                     self._outbox_bytes)
        self._transport_lost()

    def _transport_lost(self) -> None:
        self.dropped()
        self._abort()

    def _shutdown(self, linger: bool = False) -> None:
        """Close TCP after the close handshake; with `linger`, drain first so unread input
        does not turn our FIN into an RST that could destroy the close frame in flight."""
        if self.state == CLOSED:
            return
        self._finish(Trigger.SHUTDOWN)
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
        self._release()

    def _abort(self) -> None:
        self._finish(Trigger.LOST)
        self._release()

    def _finish(self, trigger: Trigger) -> None:
        """Move to CLOSED; the call that does it counts the code the connection ended with."""
        if self.finished(trigger):
            code = self.final_code
            TRAFFIC.closes[code] = TRAFFIC.closes.get(code, 0) + 1

    def _release(self) -> None:
        """Close the socket and wake a close() waiting for it (again: a no-op)."""
        try:
            self._sock.close()
        except OSError:
            pass
        if self._done is not None:
            self._done.set()
