"""In-process hubs over real WebSockets on gevent socket pairs: each client's far end is a
`Peer` that parses what the server sent (test_hub.py, test_recovery.py)."""

from __future__ import annotations

import json

import gevent
import gevent.socket
import pytest

from wsapp.config import Settings
from wsapp.websocket.connection import WebSocket
from wsapp.websocket.protocol import EV_MESSAGE, Receiver


class Peer:
    def __init__(self, sock):
        self.sock = sock
        self.receiver = Receiver(1 << 24, mask_required=False)
        self.events = []

    def messages(self, timeout=0.3):
        """Everything that arrives within `timeout`."""
        out = []
        with gevent.Timeout(timeout, False):
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                out += [json.loads(v) for k, v in self.receiver.feed(data) if k == EV_MESSAGE]
        return out


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=str(tmp_path))


@pytest.fixture
def make():
    socks = []

    def _make(hub, user, rcvbuf=None):
        a, b = gevent.socket.socketpair()
        if rcvbuf:
            b.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_RCVBUF, rcvbuf)
            a.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_SNDBUF, rcvbuf)
        socks.extend((a, b))
        ws = WebSocket(a, {}, max_message_size=1 << 20)
        ws._accept = None  # already "upgraded": a socket pair has no handshake
        return hub.connect(ws, user), Peer(b)

    yield _make
    for s in socks:
        s.close()
