"""Reading and writing a gevent socket with the least work and the shallowest stack.

gevent's socket methods wait through four nested Cython calls and its sendall asks the
kernel for the send-buffer size on every call. Each idle connection is a greenlet
suspended in recv(), and greenlet keeps a heap copy of its C stack: parking straight on the
socket's watcher from here keeps ~1 kB less per connection, and writes skip a syscall.
Sockets with a timeout, or that are not gevent's, take gevent's ordinary path.
"""

from __future__ import annotations

import socket
from typing import Any

from gevent import getcurrent
from gevent.exceptions import ConcurrentObjectUseError, InvalidSwitchError

RECV_SIZE = 65536
# One read buffer for the whole process: greenlets take turns, and every read is parsed
# before its greenlet can yield. A read allocates nothing, and large frames arrive whole.
_READ_BUFFER = bytearray(RECV_SIZE)
_READ_VIEW = memoryview(_READ_BUFFER)


def read(sock: socket.socket) -> memoryview | bytes:
    """What has arrived on `sock` (empty at EOF), waiting for something if nothing has.

    The result is a view of the process's read buffer: consume it before this greenlet
    yields, and copy what must outlive that.
    """
    raw = getattr(sock, "_sock", None)
    watcher = getattr(sock, "_read_event", None)
    if watcher is None or raw is None or sock.timeout is not None:
        return sock.recv(RECV_SIZE)
    while True:
        try:
            return _READ_VIEW[:raw.recv_into(_READ_BUFFER)]
        except BlockingIOError:
            pass
        _wait(sock.hub, watcher)


def send_all(sock: socket.socket, data: bytes | memoryview) -> None:
    """`sock.sendall(data)`: returns once the kernel has taken every byte."""
    raw = getattr(sock, "_sock", None)
    watcher = getattr(sock, "_write_event", None)
    if watcher is None or raw is None or sock.timeout is not None:
        sock.sendall(data)
        return
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    size = len(data)
    if sent == size:
        return
    view = memoryview(data)
    while sent < size:
        _wait(sock.hub, watcher)
        try:
            sent += raw.send(view[sent:])
        except BlockingIOError:
            pass


def _wait(hub: Any, watcher: Any) -> None:
    """Suspend this greenlet until `watcher` fires.

    gevent's cancel_wait (the socket closed by another greenlet) throws into the greenlet it
    finds as the callback's __self__: this one, as with gevent's own waiter.
    """
    if watcher.callback is not None:
        raise ConcurrentObjectUseError(f"socket already waited on by {watcher.callback!r}")
    watcher.start(getcurrent().switch, watcher)
    try:
        woken = hub.switch()
    finally:
        watcher.stop()
    if woken is not watcher:
        raise InvalidSwitchError(f"woken by {woken!r} while waiting on a socket")
