"""The gevent WSGIServer with our handler and settings, and graceful shutdown.

SIGINT/SIGTERM: stop accepting, close every WebSocket with 1001, wait up to
shutdown_timeout, then stop.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from wsapp.config import Settings
from wsapp.websocket.frames import CLOSE_GOING_AWAY
from wsapp.websocket.handler import WebSocketHandler
from wsapp.websocket.server import Server
from wsapp.websocket.tracker import ConnectionTracker

log = logging.getLogger("wsapp.server")


def make_server(app: Callable, settings: Settings, listener=None) -> WSGIServer:
    """A WSGIServer serving `app` with wsapp's WebSocket handler and settings."""
    listener = listener or (settings.host, settings.port)
    # A socket we are handed was listen()ed by its owner; gevent refuses a backlog for it.
    # Otherwise the default 128 drops SYNs in a burst of handshakes.
    sized = {} if hasattr(listener, "accept") else {"backlog": settings.backlog}
    server = Server(
        listener,
        app,
        handler_class=WebSocketHandler,
        **sized,
        log=logging.getLogger("wsapp.access"),
        error_log=logging.getLogger("wsapp.error"),
    )
    server.settings = settings
    server.tracker = ConnectionTracker(settings.ping_interval, settings.ping_timeout)
    extensions = getattr(app, "extensions", None)
    if extensions is not None:  # a Flask app: let /metrics see every route's connections
        extensions["wsapp.websocket.tracker"] = server.tracker
    return server


def shutdown(server: WSGIServer, timeout: float) -> None:
    """Stop accepting, close every WebSocket with 1001, then stop the server."""
    server.close()  # stop accepting; running handlers continue
    tracker: ConnectionTracker = server.tracker
    n = tracker.close_all(CLOSE_GOING_AWAY, "server shutting down", timeout)
    log.info("shutdown: closed %d WebSocket connection(s)", n)
    server.stop(timeout=1)


def serve_forever(server: WSGIServer, settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    stopping = Event()

    def on_signal() -> None:
        if not stopping.is_set():
            log.info("signal received: shutting down")
            stopping.set()

    handlers = [gevent.signal_handler(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)]
    server.start()
    host, port = server.address[:2]
    log.info("wsapp listening on http://%s:%s/", f"[{host}]" if ":" in host else host, port)
    try:
        stopping.wait()
    finally:
        for h in handlers:
            h.cancel()
        shutdown(server, settings.shutdown_timeout)
