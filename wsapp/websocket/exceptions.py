"""Every exception the WebSocket layer raises, in one place.

::

    OSError
    └── geventwebsocket.exceptions.WebSocketError   what gevent-websocket apps already catch
        └── WebSocketError                          anything wrong with one WebSocket
            ├── ProtocolError                       the peer broke RFC 6455/7692 or a limit;
            │                                       `code` is the close code to answer with
            │                                       (also gevent-websocket's ProtocolError)
            ├── ConnectionClosed                    send() on a closing or closed connection,
            │                                       receive() on a closed one; `code`/`reason`
            │                                       say how it closed
            └── HandshakeRejected                   an opening handshake refused; `status`,
                                                    `reason` and `headers` make the answer
    BaseException
    ├── HandshakeTimeout                            internal: the client did not finish its
    │                                               HTTP request in time
    └── BodyTimeout                                 internal: nor its request body

Why under gevent-websocket's WebSocketError: this layer is a drop-in for it, and an app written
for gevent-websocket catches that class (it is an OSError there too, so `except OSError`
around socket work keeps catching a dead connection).

receive() raises none of these for what a peer does: a protocol error closes the connection
with the right code and receive() returns None. Called again on the closed connection (or
after the app's own close()), it raises ConnectionClosed, as gevent-websocket raises its
WebSocketError there.
"""

from __future__ import annotations

from geventwebsocket.exceptions import ProtocolError as _StockProtocolError
from geventwebsocket.exceptions import WebSocketError as _StockWebSocketError

__all__ = ["BodyTimeout", "ConnectionClosed", "HandshakeRejected", "HandshakeTimeout",
           "ProtocolError", "WebSocketError"]


class WebSocketError(_StockWebSocketError):
    """Base of every error of wsapp's WebSocket layer."""


class ProtocolError(WebSocketError, _StockProtocolError):
    """A peer broke the protocol or a limit; `code` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ConnectionClosed(WebSocketError):
    """Raised by send() on a closing or closed connection and by receive() on a closed one
    (after the receive() that returned None); `code`/`reason` say how it closed."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code} {reason})".strip())
        self.code = code
        self.reason = reason


class HandshakeRejected(WebSocketError):
    """An opening handshake refused with an HTTP status; `reason` is the plain-text body."""

    def __init__(self, status: str, reason: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class HandshakeTimeout(BaseException):
    """The client did not finish its HTTP request in time (raised by the handler's timer).

    A BaseException, like gevent.Timeout: pywsgi turns any Exception raised while parsing
    headers into a logged "invalid request" with a traceback.
    """


class BodyTimeout(BaseException):
    """The client did not send its whole request body in time (raised by the handler's timer;
    a BaseException for the same reason as HandshakeTimeout)."""
