"""The WebSocket layer's exceptions: one module, under gevent-websocket's WebSocketError so
apps written for gevent-websocket catch them, and still importable where they used to live."""

from __future__ import annotations

import geventwebsocket.exceptions as stock
import pytest

from wsapp.websocket import connection, exceptions, frames
from wsapp.websocket.exceptions import (
    ConnectionClosed,
    HandshakeRejected,
    HandshakeTimeout,
    ProtocolError,
    WebSocketError,
)


@pytest.mark.parametrize("error", [ProtocolError(1002, "bad"), ConnectionClosed(1000, "bye"),
                                   HandshakeRejected("403 Forbidden", "no")])
def test_every_error_is_a_gevent_websocket_error(error):
    assert isinstance(error, WebSocketError)
    assert isinstance(error, stock.WebSocketError)
    with pytest.raises(stock.WebSocketError):
        raise error


def test_protocol_error_is_also_gevent_websockets_protocol_error():
    err = ProtocolError(1009, "frame too big")
    assert isinstance(err, stock.ProtocolError)
    assert (err.code, err.reason, str(err)) == (1009, "frame too big", "1009: frame too big")


def test_fields_of_each_error():
    closed = ConnectionClosed(1001, "going away")
    assert (closed.code, closed.reason) == (1001, "going away")
    assert str(ConnectionClosed(None)) == "connection closed (None )"
    rej = HandshakeRejected("503 Service Unavailable", "full", [("Retry-After", "5")])
    assert (rej.status, rej.reason, rej.headers) == ("503 Service Unavailable", "full",
                                                     [("Retry-After", "5")])
    assert HandshakeRejected("400 Bad Request", "x").headers == []


def test_handshake_timeout_escapes_except_exception():
    # pywsgi logs any Exception raised while reading headers as an invalid request.
    assert not issubclass(HandshakeTimeout, Exception)
    with pytest.raises(HandshakeTimeout):
        try:
            raise HandshakeTimeout()
        except Exception:  # the point: this must not catch it
            pytest.fail("caught as an Exception")


def test_old_import_locations_still_work():
    assert frames.ProtocolError is ProtocolError
    assert connection.ConnectionClosed is ConnectionClosed


def test_the_module_lists_every_exception_it_defines():
    defined = {name for name, value in vars(exceptions).items()
               if isinstance(value, type) and issubclass(value, BaseException)
               and value.__module__ == exceptions.__name__}
    assert defined == set(exceptions.__all__)
    for name in defined:
        assert name in exceptions.__doc__
