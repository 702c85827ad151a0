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

from wsapp.config import Settings, loopback
from wsapp.realtime.state import EXTENSION, AppState
from wsapp.realtime.urls import redact
from wsapp.websocket.frames import CLOSE_GOING_AWAY
from wsapp.websocket.handler import WebSocketHandler
from wsapp.websocket.httpguard import default_hosts
from wsapp.websocket.logsoon import flush
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
    server.allowed_hosts = settings.hosts() or default_hosts(settings.host)
    server.tracker = ConnectionTracker(settings.ping_interval, settings.ping_timeout)
    realtime = realtime_of(app)
    if realtime is not None:  # /metrics counts every route's connections
        realtime.tracker = server.tracker
    return server


def realtime_of(app: object) -> AppState | None:
    """The real-time state of a Flask app with wsapp's Realtime (None for any other app)."""
    extensions = getattr(app, "extensions", None)
    return extensions.get(EXTENSION) if isinstance(extensions, dict) else None


def shutdown(server: WSGIServer, timeout: float) -> None:
    """Stop accepting, close every WebSocket with 1001, then stop the server."""
    server.close()  # stop accepting; running handlers continue
    tracker: ConnectionTracker = server.tracker
    n = tracker.close_all(CLOSE_GOING_AWAY, "server shutting down", timeout)
    server.stop(timeout=1)
    flush()  # each connection's close line, then the sum: one line per connection counted
    log.info("shutdown: closed %d WebSocket connection(s)", n)


def log_mode(settings: Settings) -> None:
    """Say at start which mode this is and where the data goes: a newcomer should not have
    to read the docs to learn that anyone may act as anyone, or what lands on disk."""
    if not settings.api_key:
        log.warning("DEMO MODE: no --api-key, so anyone who can reach this server may mint a "
                    "token for any user, read anyone's messages and use the whole HTTP API; "
                    "set --api-key (WSAPP_API_KEY) outside your machine%s",
                    "" if loopback(settings.host) else
                    f" -- and it listens on {settings.host} (--public-demo)")
    store = settings.store_url()
    where = (f"SQLite {store.removeprefix('sqlite:///')}" if store.startswith("sqlite:")
             else redact(store))
    keys = ("--jwt-public-key" if settings.jwt_algorithm != "HS256" else
            "--secret" if settings.secret else f"{settings.data_dir}/secret (made if missing)")
    log.info("data: channel history, personal messages and push records in %s; broker %s; "
             "token keys from %s", where, redact(settings.broker), keys)


def serve_forever(server: WSGIServer, settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    stopping = Event()

    def on_signal() -> None:
        if not stopping.is_set():
            log.info("signal received: shutting down")
            stopping.set()

    handlers = [gevent.signal_handler(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)]
    realtime = realtime_of(server.application)
    if realtime is not None:  # engines (a bad or unreachable one shows at start), feeds: all
        realtime.start()      # there before the first request is taken
    server.start()
    host, port = server.address[:2]
    log.info("wsapp listening on http://%s:%s/", f"[{host}]" if ":" in host else host, port)
    log_mode(settings)
    if server.allowed_hosts != ["*"]:
        log.info("answering requests for the hosts %s only (--allowed-hosts); others get 421",
                 ", ".join(server.allowed_hosts))
    try:
        stopping.wait()
    finally:
        for h in handlers:
            h.cancel()
        # Feeds first: a round in hand is finished (stored and acknowledged) or left for
        # redelivery while the connections are still open to receive it.
        if realtime is not None:
            realtime.stop(settings.shutdown_timeout)
        shutdown(server, settings.shutdown_timeout)
