"""The rest of gevent-websocket 0.10.1's WebSocket API, as a stateless mixin of `WebSocket`.

Apps and libraries written for gevent-websocket read more off environ["wsgi.websocket"] than
receive/send/close: python-engineio (Flask-SocketIO) reads `version`, `path`, `origin` and
`protocol`; its Resource apps and chat examples reach `handler` and `handler.server.clients`;
low-level code calls read_frame(), handle_ping() or raw_write(). Every such item of 0.10.1's
public surface is here, with 0.10.1's signature and meaning (docs/compat.md lists each).

Nothing here may cost the raw route anything: the mixin has no slots of its own and every
item is a class attribute, a property or a method. What 0.10.1 keeps per connection is made
on first use only: the incremental UTF-8 validator lives in a weak map beside the
connection, and the `Stream` object is built when asked for.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

from geventwebsocket.utf8validator import Utf8Validator as _StockUtf8Validator
from geventwebsocket.websocket import Header

from wsapp.websocket.exceptions import ConnectionClosed, ProtocolError
from wsapp.websocket.frames import (
    CLOSE_INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_close_payload,
    parse_close_payload,
)
from wsapp.websocket.protocol import EV_CLOSE, EV_ERROR, EV_MESSAGE, EV_PING
from wsapp.websocket.state import CLOSED

if TYPE_CHECKING:
    from wsapp.websocket.protocol import Event
    from wsapp.websocket.state import State

__all__ = ["GeventWebSocketAPI", "Header", "Stream", "Utf8Validator"]

log = logging.getLogger("wsapp.websocket.connection")


class Utf8Validator(_StockUtf8Validator):
    """gevent-websocket's incremental validator, remembering its last result (0.10.1 keeps
    that on the WebSocket as `utf8validate_last`)."""

    last: tuple = (True, True, 0, 0)


_VALIDATORS: WeakKeyDictionary[Any, Utf8Validator] = WeakKeyDictionary()


class Stream:
    """gevent-websocket's Stream: the handler and the connection's raw `read(size)` and
    `write(data)` (reads bypass the frame parser; writes take their turn with every send)."""

    __slots__ = ("handler", "read", "write")

    def __init__(self, ws: GeventWebSocketAPI) -> None:
        self.handler = ws.handler
        self.read = ws._raw_read
        self.write = ws._raw_write


class _NoApp:
    """What `current_app` is when the server's application names none (0.10.1's MockApp)."""

    def on_close(self, *args: Any) -> None:
        pass


_NO_APP = _NoApp()


class GeventWebSocketAPI:
    """0.10.1's accessors, constants and frame-level methods, for `WebSocket`."""

    __slots__ = ()

    OPCODE_CONTINUATION = OP_CONT
    OPCODE_TEXT = OP_TEXT
    OPCODE_BINARY = OP_BINARY
    OPCODE_CLOSE = OP_CLOSE
    OPCODE_PING = OP_PING
    OPCODE_PONG = OP_PONG

    if TYPE_CHECKING:  # what WebSocket provides
        environ: dict
        handler: Any
        state: State
        close_code: int | None
        close_reason: str
        _reader: Any

        @property
        def closed(self) -> bool: ...
        def receive(self) -> str | bytes | None: ...
        def send_frame(self, message: str | bytes | None, opcode: int) -> None: ...
        def close_received(self, code: int, reason: str) -> int | None: ...
        def _claim_reader(self) -> None: ...
        def _next_event(self) -> Event | None: ...
        def _fail(self, code: int, reason: str) -> None: ...
        def _peer_closed(self, code: int, reason: str, reason_back: str = "") -> None: ...
        def _raw_read(self, size: int) -> bytes: ...
        def _raw_write(self, data: bytes) -> None: ...

    # -- what the request asked for -----------------------------------------------------

    @property
    def version(self) -> str | None:
        """The Sec-WebSocket-Version the client sent ("13")."""
        return self.environ.get("HTTP_SEC_WEBSOCKET_VERSION")

    @property
    def protocol(self) -> str | None:
        """The Sec-WebSocket-Protocol header as the client sent it (0.10.1's meaning; the
        subprotocol agreed, if any, is `subprotocol`)."""
        return self.environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")

    # -- the server around it -----------------------------------------------------------

    @property
    def logger(self) -> logging.Logger:
        """The handler's logger (that is, the server's)."""
        handler = self.handler
        return handler.logger if handler is not None else log

    @property
    def current_app(self) -> Any:
        """The server's `application.current_app` if it has one, else an object whose
        on_close() does nothing; told on_close(reason) when the app uses a closed socket."""
        app = getattr(getattr(self.handler, "server", None), "application", None)
        return getattr(app, "current_app", _NO_APP)

    # -- raw bytes ----------------------------------------------------------------------

    @property
    def stream(self) -> Stream | None:
        """The raw stream (None once the connection is closed, as in 0.10.1)."""
        return None if self.closed else Stream(self)

    @property
    def raw_read(self) -> Any:
        """`raw_read(size)`: bytes straight from the socket; None once closed."""
        return None if self.closed else self._raw_read

    @property
    def raw_write(self) -> Any:
        """`raw_write(data)`: bytes straight to the socket, in turn; None once closed."""
        return None if self.closed else self._raw_write

    # -- UTF-8 ----------------------------------------------------------------------------

    @property
    def utf8validator(self) -> Utf8Validator:
        """This connection's incremental UTF-8 validator, made on first use (wsapp's own
        receive path validates with Python's codec and never needs it)."""
        validator = _VALIDATORS.get(self)
        if validator is None:
            validator = _VALIDATORS[self] = Utf8Validator()
        return validator

    @property
    def utf8validate_last(self) -> tuple:
        """The last (valid, ends_on_codepoint, index, total_index) of validate_utf8()."""
        return self.utf8validator.last

    def validate_utf8(self, payload: bytes) -> None:
        """Feed `payload` to the incremental validator; UnicodeError if it is not UTF-8."""
        validator = self.utf8validator
        validator.last = validator.validate(payload)
        if not validator.last[0]:
            raise UnicodeError("Encountered invalid UTF-8 while processing text message at "
                               f"payload octet index {validator.last[3]:d}")

    # -- frames -----------------------------------------------------------------------------

    def read_message(self) -> str | bytes | None:
        """The next message: receive()."""
        return self.receive()

    def read_frame(self) -> tuple[Header, bytes]:
        """The next frame as 0.10.1's (Header, payload), not acted upon: a ping is not
        answered nor a close frame (handle_ping() and handle_close() do that).

        wsapp reassembles fragments and inflates compressed messages as they arrive, so a
        data message comes as one final frame (text as its UTF-8 bytes). A protocol error
        closes the connection with its code, then raises ProtocolError; the end of input
        raises WebSocketError.
        """
        self._claim_reader()
        try:
            event = self._next_event()
        finally:
            self._reader = None
        if event is None:
            raise ConnectionClosed(self.close_code, "unexpected EOF while reading a frame")
        kind, value = event
        if kind == EV_ERROR:
            assert isinstance(value, ProtocolError)
            self._fail(value.code, value.reason)
            raise value
        if kind == EV_MESSAGE:
            opcode = OP_TEXT if isinstance(value, str) else OP_BINARY
            payload = value.encode("utf-8") if isinstance(value, str) else value
        elif kind == EV_CLOSE:
            code, reason = cast(tuple[int, str], value)
            self.close_received(code, reason)  # recorded; answered by handle_close()
            opcode, payload = OP_CLOSE, build_close_payload(code, reason)
        else:
            opcode, payload = (OP_PING if kind == EV_PING else OP_PONG), value
        assert isinstance(payload, bytes)
        return Header(fin=True, opcode=opcode, length=len(payload)), payload

    def handle_close(self, header: Any, payload: bytes) -> None:
        """The peer's close frame (its payload) arrived: answer with its code and reason, and
        close. ProtocolError for a malformed payload or a code peers may not send,
        UnicodeError for a reason that is not UTF-8."""
        if self.state == CLOSED:
            self.current_app.on_close("Connection is already closed")
            return
        try:
            code, reason = parse_close_payload(bytes(payload or b""))
        except ProtocolError as exc:
            if exc.code == CLOSE_INVALID_DATA:
                raise UnicodeError(exc.reason) from None
            raise
        self._peer_closed(code, reason, reason_back=reason)

    def handle_ping(self, header: Any, payload: bytes) -> None:
        """Answer a ping with a pong carrying its payload."""
        self.send_frame(payload, OP_PONG)
