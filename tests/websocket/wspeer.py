"""The client end of a gevent socket pair whose server end is a wsapp WebSocket: sends masked
frames and parses what the server sends (tests/websocket/conftest.py's `pair` uses it)."""

import gevent

from wsapp.websocket.frames import build_frame
from wsapp.websocket.protocol import Receiver

MASK = b"\x0a\x0b\x0c\x0d"


class Peer:
    """The client end: sends masked frames, parses the server's frames."""

    def __init__(self, sock):
        self.sock = sock
        self.receiver = Receiver(1 << 26, 1 << 20, mask_required=False)
        self.events = []

    def send(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, mask=MASK, **kw))

    def next_event(self, timeout=5):
        with gevent.Timeout(timeout):
            while not self.events:
                data = self.sock.recv(65536)
                if not data:
                    return None
                self.events += self.receiver.feed(data)
            return self.events.pop(0)

    def eof(self, timeout=5):
        with gevent.Timeout(timeout):
            return self.sock.recv(10) == b""
