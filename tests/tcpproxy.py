"""A TCP proxy a test puts between wsapp and a shared service (RabbitMQ, PostgreSQL, Redis).

It lets a test take the service away from one wsapp process without disturbing anyone else
using the service: `stop()` closes the listener and every proxied connection (the service
looks gone: connections reset, new ones refused), `start()` listens again on the same port;
`pause()` keeps every connection open but relays nothing (the service looks hung), `resume()`
relays again. Plain threads: the tests are not gevent-patched.
"""

from __future__ import annotations

import socket
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
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)
        self._relaying.set()  # threads held by pause() see their sockets closed and end

    def pause(self) -> None:
        """Relay nothing more (connections stay open): a service that hangs."""
        self._relaying.clear()

    def resume(self) -> None:
        self._relaying.set()

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
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._relaying.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
