"""A TCP proxy a test puts between wsapp and a shared service (RabbitMQ, PostgreSQL, Redis).

It lets a test take the service away from one wsapp process without disturbing anyone else
using the service: `stop()` closes the listener and every proxied connection (the service
looks gone: connections reset, new ones refused), `start()` listens again on the same port;
`pause()` keeps every connection open but relays nothing (the service looks hung), `resume()`
relays again; `hold_replies()` relays requests but no answers, so a `stop()` after it leaves
requests the service carried out whose replies never came. Plain threads: the tests are not
gevent-patched.
"""

from __future__ import annotations

import socket
import struct
import threading

from serverproc import free_port


class TcpProxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._relaying = threading.Event()
        self._relaying.set()
        self._replying = threading.Event()  # cleared: the service's replies are held
        self._replying.set()

    def start(self) -> TcpProxy:
        """Listen (again) on the same port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listener and every proxied connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # the shutdown ends the blocked accept(): the port is free
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock, reset=True)
        self._relaying.set()  # threads held by pause() see their sockets closed and end
        self._replying.set()  # ...and what hold_replies() held is dropped with them

    def pause(self) -> None:
        """Relay nothing more (connections stay open): a service that hangs."""
        self._relaying.clear()

    def resume(self) -> None:
        self._relaying.set()
        self._replying.set()

    def hold_replies(self) -> None:
        """Relay what clients send, hold what the service answers (until `stop()` drops it
        or `resume()`): requests are carried out, their callers never hear."""
        self._replying.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst, reply in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, reply),
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, reply: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._relaying.wait()
                if reply:
                    self._replying.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(sock: socket.socket, reset: bool = False) -> None:
    """Close (the shutdown wakes a thread blocked reading it); `reset`: with an RST, so no
    connection lingers on the proxy's port and `start()` can listen on it again at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
