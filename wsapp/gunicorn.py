"""A gunicorn worker class that serves wsapp: `gunicorn -k wsapp.gunicorn.Worker`.

    gunicorn -k wsapp.gunicorn.Worker -w 4 --worker-connections 10000 \\
        -b 0.0.0.0:8000 'wsapp:create_app()'

It is gunicorn's gevent pywsgi worker with wsapp's WebSocket handler (the hardened handshake,
permessage-deflate, limits) and wsapp's shutdown: on SIGTERM the worker stops accepting and
closes every WebSocket with 1001 "server shutting down" within `shutdown_timeout`, instead of
letting long-lived sockets hold it until gunicorn's graceful timeout kills them.

Settings are the app's WSAPP_* config when it has wsapp's Realtime, else WSAPP_* variables.
Several workers are several processes: give them a shared broker and store
(WSAPP_BROKER=redis://…, WSAPP_STORE=redis://…) and a shared WSAPP_SECRET. gunicorn caps each
worker at `--worker-connections` (1000 by default): raise it for WebSockets.
"""

from __future__ import annotations

import sys
from typing import Any

import gevent
from gunicorn.arbiter import Arbiter
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from wsapp.config import Settings, from_env
from wsapp.realtime.engines import shared
from wsapp.realtime.state import AppState, StartError
from wsapp.server import realtime_of
from wsapp.websocket.frames import CLOSE_GOING_AWAY
from wsapp.websocket.handler import WebSocketHandler
from wsapp.websocket.httpguard import default_hosts, redact_query
from wsapp.websocket.logsoon import flush
from wsapp.websocket.options import from_mapping
from wsapp.websocket.tracker import ConnectionTracker


class Handler(WebSocketHandler):
    """wsapp's handler, logging plain HTTP requests through gunicorn's access log."""

    def get_environ(self) -> dict:
        env = super().get_environ()
        env["gunicorn.sock"] = self.socket  # what gunicorn's own handler provides
        env["RAW_URI"] = self.path
        return env

    def log_request(self) -> None:
        environ = getattr(self, "environ", None)
        if environ and "websocket" in environ.get("HTTP_UPGRADE", "").lower():
            return  # upgrades are logged by wsapp.websocket.handler, with more detail
        self.environ = redacted(environ)  # gunicorn's access log formats the query
        try:
            PyWSGIHandler.log_request(self)
        finally:
            self.environ = environ


def redacted(environ: dict) -> dict:
    """A copy of `environ` whose URI and query carry no credentials, for the access log."""
    return {**environ, "RAW_URI": redact_query(environ.get("RAW_URI", "")),
            "QUERY_STRING": redact_query("?" + environ.get("QUERY_STRING", ""))[1:]}


def settings_of(app: Any) -> Settings:
    """The settings of a Flask app with wsapp's Realtime (its WSAPP_* config), else of any
    WSGI app from the WSAPP_* environment variables."""
    if realtime_of(app) is not None:
        return from_mapping(Settings, app.config)
    return from_env()


class Worker(GeventPyWSGIWorker):
    """gunicorn's gevent worker with wsapp's WebSocket handler and graceful WebSocket close."""

    wsgi_handler = Handler

    def load_wsgi(self) -> None:
        """Load the app; a bad WSAPP_* setting (create_app() reads them) is one line and a
        boot error that stops gunicorn, not a traceback per worker."""
        try:
            super().load_wsgi()
        except Exception as exc:
            cause = exc if isinstance(exc, ValueError) else exc.__cause__ or exc.__context__
            if not isinstance(cause, ValueError) or not str(cause).startswith("WSAPP_"):
                raise
            self.log.error("wsapp: %s", cause)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def run(self) -> None:
        settings = settings_of(self.wsgi)
        tracker = ConnectionTracker(settings.ping_interval, settings.ping_timeout)
        realtime = realtime_of(self.wsgi)
        if realtime is not None and self.cfg.workers > 1 and not shared(realtime.settings.broker):
            # A memory broker reaches only its own worker: a publish on one would miss the
            # subscribers of the others. gunicorn stops at a worker that fails to boot.
            self.log.error("wsapp: %d workers need a broker they share (WSAPP_BROKER=redis://"
                           "...); the %r broker reaches only its own worker", self.cfg.workers,
                           realtime.settings.broker)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        if realtime is not None:  # /metrics counts every route's connections
            realtime.tracker = tracker
            try:  # engines (a bad or unreachable one shows at start), token keys, feeds
                realtime.start()
            except StartError as exc:  # one line; gunicorn stops at a worker boot error
                self.log.error("wsapp: %s", exc)
                sys.exit(Arbiter.WORKER_BOOT_ERROR)

        bound = [str(sock.getsockname()[0]) if isinstance(sock.getsockname(), tuple) else ""
                 for sock in self.sockets]

        class Server(PyWSGIServer):
            """The pywsgi server carrying what wsapp's handler reads from it."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.settings = settings
                self.tracker = tracker
                self.allowed_hosts = settings.hosts() or default_hosts(*bound)

        self.server_class = Server
        closer = gevent.spawn(self._close_websockets_on_exit, tracker, settings, realtime)
        try:
            super().run()
        finally:
            closer.kill(block=False)
            if realtime is not None:
                realtime.stop(settings.shutdown_timeout)  # a second call returns at once

    def _close_websockets_on_exit(self, tracker: ConnectionTracker, settings: Settings,
                                  realtime: AppState | None) -> None:
        """Once gunicorn asks the worker to stop, stop the feeds and close every WebSocket
        with 1001."""
        while self.alive:
            gevent.sleep(0.2)
        if realtime is not None:
            realtime.stop(settings.shutdown_timeout)
        n = tracker.close_all(CLOSE_GOING_AWAY, "server shutting down", settings.shutdown_timeout)
        flush()  # the close lines before the sum, as serve.py writes them
        self.log.info("wsapp: closed %d WebSocket connection(s) for shutdown", n)
