"""A connection's life as an explicit state machine, sans-I/O: who closed first, codes both ways.

Theory of operation
-------------------
A server-side WebSocket is in one of four states; `TRANSITIONS` is the whole table::

    CONNECTING --ACCEPT--> OPEN --SEND_CLOSE / RECV_CLOSE--> CLOSING --SHUTDOWN--> CLOSED
        |                   |                                  |                     ^
        +-- REFUSE, LOST ---+------------- LOST ---------------+---------------------+

CONNECTING  the handshake was accepted, but the 101 goes out only when the route first uses
            the connection, so a route that answers with an HTTP error (REFUSE) leaves no
            dead WebSocket behind.
OPEN        messages flow both ways.
CLOSING     a close frame went out, came in, or both. send() refuses (`closed` is true from
            here on); the first close frame decides `closed_by`, the second completes the
            closing handshake, after which TCP is shut (SHUTDOWN).
CLOSED      TCP is shut, lost or given up on: nothing is read or written any more. Every
            trigger is accepted here and changes nothing: a late abort, a close frame that
            was parsed before the transport died.

Codes, both ways: `sent_close_code` is what our close frame carried (1005: a frame without
one), `close_code`/`close_reason` what the peer's carried, or 1006 when it never sent one
(the connection dropped, or we failed it for a protocol error). `final_code` is the one the
connection is counted under.

The peer's close frame reaches this machine when receive() gets to it (RECV_CLOSE), not when
the parser sees it: messages that arrived before it are still delivered and answered (the
parser's own `Receiver.closed` says only that input has ended). Hence the receive() that
moves the connection to CLOSING/CLOSED is the one that returns None. A receive() that
*enters* in CLOSED returns None if the app has not heard yet (the server closed the
connection while its route was busy elsewhere), and raises ConnectionClosed once it has (after
that None, or after its own close()): where gevent-websocket raises WebSocketError, of which
ConnectionClosed is a subclass.

`ConnectionState` holds this on the connection object itself (as a base class with
`__slots__`, not a separate object): `state` is a plain int, so `closed` is one comparison
on every send.
"""

from __future__ import annotations

from enum import IntEnum

from wsapp.websocket.exceptions import ConnectionClosed
from wsapp.websocket.frames import CLOSE_ABNORMAL, CLOSE_NO_STATUS


class State(IntEnum):
    """Where a connection is in its life; ordered, so `state >= CLOSING` means closed."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Trigger(IntEnum):
    """What happened to the connection."""

    ACCEPT = 0  # the 101 went out
    REFUSE = 1  # the route answered with HTTP instead of using the WebSocket
    SEND_CLOSE = 2  # our close frame (first, or answering the peer's)
    RECV_CLOSE = 3  # receive() reached the peer's close frame
    SHUTDOWN = 4  # the closing handshake is over (or given up): TCP is shut
    LOST = 5  # the transport failed or was aborted


CONNECTING = State.CONNECTING
OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED

TRANSITIONS: dict[State, dict[Trigger, State]] = {
    State.CONNECTING: {Trigger.ACCEPT: OPEN, Trigger.REFUSE: CLOSED, Trigger.LOST: CLOSED},
    State.OPEN: {Trigger.SEND_CLOSE: CLOSING, Trigger.RECV_CLOSE: CLOSING,
                 Trigger.LOST: CLOSED},
    State.CLOSING: {Trigger.SEND_CLOSE: CLOSING, Trigger.RECV_CLOSE: CLOSING,
                    Trigger.SHUTDOWN: CLOSED, Trigger.LOST: CLOSED},
    State.CLOSED: dict.fromkeys(Trigger, CLOSED),
}

SERVER = "server"
CLIENT = "client"


def next_state(state: State, trigger: Trigger) -> State:
    """The state after `trigger`; RuntimeError for a transition the table does not have (a bug
    in the caller, never something a peer can cause)."""
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise RuntimeError(f"no transition from {state.name} on {trigger.name}") from None


class ConnectionState:
    """The state and the close record of one connection (the connection object's base)."""

    __slots__ = ("state", "close_code", "close_reason", "sent_close_code", "closed_by")

    def __init__(self, connecting: bool = True) -> None:
        self.state = CONNECTING if connecting else OPEN
        self.close_code: int | None = None  # the peer's, once its close frame arrived
        self.close_reason = ""
        self.sent_close_code: int | None = None  # ours, once our close frame was sent
        self.closed_by: str | None = None  # SERVER or CLIENT: whose close frame came first

    def _move(self, trigger: Trigger) -> State:
        """Apply `trigger`; return the state it left."""
        before = self.state
        self.state = next_state(before, trigger)
        return before

    @property
    def closed(self) -> bool:
        """True once either side started closing or the transport died."""
        return self.state >= CLOSING

    def opened(self) -> bool:
        """The 101 is going out now; False if the connection was refused or lost first."""
        if self.state != CONNECTING:
            return False
        self._move(Trigger.ACCEPT)
        return True

    def refused(self) -> None:
        """The route answered with HTTP instead: the WebSocket never opens."""
        self._move(Trigger.REFUSE)

    def close_sent(self, code: int | None) -> bool:
        """Record our close frame (None: one without a code); False if one was sent already or
        the connection is gone, and the caller must not send it."""
        if self.sent_close_code is not None or self.state == CLOSED:
            return False
        if self._move(Trigger.SEND_CLOSE) == OPEN:
            self.closed_by = SERVER
        self.sent_close_code = code if code is not None else CLOSE_NO_STATUS
        return True

    def close_received(self, code: int, reason: str) -> int | None:
        """Record the peer's close frame; return the code to answer with (theirs; None for a
        frame that had none)."""
        self.close_code, self.close_reason = code, reason
        if self._move(Trigger.RECV_CLOSE) == OPEN:
            self.closed_by = CLIENT
        return None if code == CLOSE_NO_STATUS else code

    def failed(self, reason: str) -> None:
        """We failed the connection (protocol error): the peer sent no close code of its own."""
        self.close_code = CLOSE_ABNORMAL
        self.close_reason = reason

    def dropped(self) -> None:
        """The transport died before the peer's close frame arrived, if it ever did."""
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL

    def finished(self, trigger: Trigger) -> bool:
        """Move to CLOSED on SHUTDOWN or LOST; True only for the call that got it there."""
        return self._move(trigger) != CLOSED

    @property
    def final_code(self) -> int:
        """The code the connection ended with: ours if we sent one (we echo the peer's), else
        1006 for a connection that just dropped."""
        return self.sent_close_code or self.close_code or CLOSE_ABNORMAL

    def closed_error(self) -> ConnectionClosed:
        """The error for a send on this closed connection."""
        return ConnectionClosed(self.close_code or self.sent_close_code, self.close_reason)
