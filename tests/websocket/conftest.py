"""Fixtures of the WebSocket layer's tests."""

import gevent.socket
import pytest
from wspeer import Peer

from wsapp.websocket.connection import WebSocket


@pytest.fixture
def pair():
    """(a WebSocket on one end of a socket pair, the Peer on the other, the list its accept
    callback appends True to when the 101 would go out)."""
    a, b = gevent.socket.socketpair()
    accepted = []
    ws = WebSocket(a, {"PATH_INFO": "/t", "REMOTE_ADDR": "1.2.3.4", "REMOTE_PORT": "5"},
                   max_message_size=1 << 20, close_timeout=1.0,
                   accept=lambda: accepted.append(True))
    yield ws, Peer(b), accepted
    a.close()
    b.close()
