"""Reading and writing a gevent socket with the least work and the shallowest stack.

gevent's socket methods wait through four nested Cython calls and its sendall asks the
kernel for the send-buffer size on every call. Each idle connection is a greenlet
suspended in recv(), and greenlet keeps a heap copy of its C stack: parking straight on the
socket's watcher from here keeps ~1 kB less per connection, and writes skip a syscall.
Sockets with a timeout, or that are not gevent's, take gevent's ordinary path.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from gevent import getcurrent
from gevent.exceptions import ConcurrentObjectUseError, InvalidSwitchError

RECV_SIZE = 262144
# Frames at least this large are written as header + payload in one sendmsg: copying the
# payload behind its header costs more than the second iovec.
GATHER_MIN = 16384
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
        _wait(cast(Any, sock).hub, watcher)  # a gevent socket (it has a watcher)


def send_all(sock: socket.socket, data: bytes | memoryview, tail: bytes = b"",
             timeout: float | None = None) -> None:
    """`sock.sendall(data + tail)`, returning once the kernel has taken every byte.

    With a `tail` (a large payload behind its header) both go in one sendmsg call, so the
    payload is never copied to sit behind the header. With a `timeout`, TimeoutError when
    the peer takes no byte for that long (a peer that never reads must not hold a greenlet,
    and what it was sent, forever).
    """
    raw = getattr(sock, "_sock", None)
    watcher = getattr(sock, "_write_event", None)
    if watcher is None or raw is None or sock.timeout is not None:
        sock.sendall(bytes(data) + tail if tail else data)
        return
    sent = _send_now(raw, data, tail)
    head = len(data)
    if sent == head + len(tail):
        return
    # The kernel took part of it (its buffer is full): finish with plain sends as it drains.
    if sent < head:
        _send_rest(sock, raw, watcher, data, sent, timeout)
        sent = head
    if tail:
        _send_rest(sock, raw, watcher, tail, sent - head, timeout)


def _send_rest(sock: Any, raw: socket.socket, watcher: Any, data: bytes | memoryview,
               sent: int, timeout: float | None) -> None:
    view = memoryview(data)
    size = len(view)
    while sent < size:
        _wait(sock.hub, watcher, timeout)
        sent += _send_now(raw, view[sent:])


def send_now(sock: socket.socket, data: bytes) -> int:
    """How much of `data` the kernel takes at once, without waiting (0 when its buffer is
    full, or for a socket that is not gevent's)."""
    raw = getattr(sock, "_sock", None)
    return _send_now(raw, data) if raw is not None else 0


def _send_now(raw: socket.socket, data: bytes | memoryview, tail: bytes = b"") -> int:
    try:
        return raw.sendmsg((data, tail)) if tail else raw.send(data)
    except BlockingIOError:
        return 0


def _wait(hub: Any, watcher: Any, timeout: float | None = None) -> None:
    """Suspend this greenlet until `watcher` fires; TimeoutError after `timeout` seconds.

    gevent's cancel_wait (the socket closed by another greenlet) throws into the greenlet it
    finds as the callback's __self__: this one, as with gevent's own waiter.
    """
    if watcher.callback is not None:
        raise ConcurrentObjectUseError(f"socket already waited on by {watcher.callback!r}")
    switch = getcurrent().switch
    watcher.start(switch, watcher)
    timer = None
    if timeout is not None:  # only on this slow path: a write the kernel could not take
        timer = hub.loop.timer(timeout)
        timer.start(switch, timer)
    try:
        woken = hub.switch()
    finally:
        watcher.stop()
        if timer is not None:
            timer.close()
    if woken is timer:
        raise TimeoutError(f"the peer took no data for {timeout}s")
    if woken is not watcher:
        raise InvalidSwitchError(f"woken by {woken!r} while waiting on a socket")
