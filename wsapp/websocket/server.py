"""gevent's WSGIServer, one C call shallower per connection; and wsapp's WebSocketServer.

`WebSocketServer` is gevent-websocket 0.10.1's `geventwebsocket.server.WebSocketServer` with
wsapp's handler as its default: the same constructor (`debug=`, `pre_start_hook=`, then
WSGIServer's arguments), `clients` (here a view of the connection tracker:
wsapp.websocket.clients), `pre_start_hook`, `logger`, `debug_log_format` and `handle()`.
Apps that ran `WebSocketServer(address, app).serve_forever()` change the import only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gevent.pywsgi import WSGIServer

from wsapp.websocket.clients import ClientMap
from wsapp.websocket.handler import WebSocketHandler

__all__ = ["Server", "WebSocketServer"]


class Server(WSGIServer):
    """gevent's WSGIServer, starting each connection's greenlet one C call shallower.

    gevent runs a connection as ``handle(*args)``, which Python 3.11 executes through C; the
    greenlet keeps a copy of that C frame for as long as the connection lives (~0.5 kB of
    each idle connection). Calling ``handle(sock, address)`` stays in the interpreter.
    """

    def do_handle(self, *args: object) -> None:
        if len(args) != 2 or self._spawn is None:
            return super().do_handle(*args)
        try:
            self._spawn(_serve_connection, self._handle, self.do_close, *args)
        except BaseException:
            self.do_close(*args)
            raise
        return None


def _serve_connection(handle: Callable, close: Callable, sock: object, address: object) -> None:
    try:
        handle(sock, address)
    finally:
        close(sock, address)


class WebSocketServer(Server):
    """gevent-websocket's WebSocketServer, serving with wsapp's WebSocket handler.

    Settings are `server.settings` if set before serving, else WSAPP_* environment
    variables (as for any server using wsapp's handler).
    """

    handler_class = WebSocketHandler
    debug_log_format = ("-" * 80 + "\n%(levelname)s in %(module)s [%(pathname)s:%(lineno)d]:\n"
                        "%(message)s\n" + "-" * 80)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.debug: bool = kwargs.pop("debug", False)
        self.pre_start_hook: Callable[[Any], Any] | None = kwargs.pop("pre_start_hook", None)
        self._logger: logging.Logger | None = None
        self.clients = ClientMap(self)
        super().__init__(*args, **kwargs)

    def handle(self, socket: Any, address: Any) -> None:
        self.handler_class(socket, address, self).handle()

    @property
    def logger(self) -> logging.Logger:
        """The logger handlers and WebSockets log to (`ws.logger`); with `debug=True` it
        prints DEBUG records in `debug_log_format` to stderr."""
        if self._logger is None:
            logger = logging.getLogger(__name__)
            if self.debug and not logger.handlers:
                printer = logging.StreamHandler()
                printer.setFormatter(logging.Formatter(self.debug_log_format))
                logger.addHandler(printer)
                logger.setLevel(logging.DEBUG)
            self._logger = logger
        return self._logger
