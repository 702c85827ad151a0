"""A gunicorn worker class that serves wsapp: `gunicorn -k wsapp.gunicorn.Worker`.

    gunicorn -k wsapp.gunicorn.Worker -w 4 --worker-connections 10000 \\
        -b 0.0.0.0:8000 'wsapp:create_app()'

It is gunicorn's gevent pywsgi worker with wsapp's WebSocket handler (the hardened handshake,
permessage-deflate, limits) and wsapp's shutdown: on SIGTERM the worker stops accepting and
closes every WebSocket with 1001 "server shutting down" within `shutdown_timeout`, instead of
letting long-lived sockets hold it until gunicorn's graceful timeout kills them.

Settings are the app's (`app.config["WSAPP"]` of a wsapp Flask app), else WSAPP_* variables.
Several workers are several processes: give them a shared broker and store
(WSAPP_BROKER=redis://…, WSAPP_STORE=redis://…) and a shared WSAPP_SECRET. gunicorn caps each
worker at `--worker-connections` (1000 by default): raise it for WebSockets.
"""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from wsapp.config import Settings, from_env
from wsapp.realtime import start_serving
from wsapp.websocket.frames import CLOSE_GOING_AWAY
from wsapp.websocket.handler import WebSocketHandler
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
        PyWSGIHandler.log_request(self)


def settings_of(app: Any) -> Settings:
    """The wsapp Settings of a WSGI app (a wsapp Flask app's own), else from WSAPP_* vars."""
    config = getattr(app, "config", None)
    settings = config.get("WSAPP") if isinstance(config, dict) else None
    return settings if isinstance(settings, Settings) else from_env()


class Worker(GeventPyWSGIWorker):
    """gunicorn's gevent worker with wsapp's WebSocket handler and graceful WebSocket close."""

    wsgi_handler = Handler

    def run(self) -> None:
        settings = settings_of(self.wsgi)
        tracker = ConnectionTracker(settings.ping_interval, settings.ping_timeout)
        extensions = getattr(self.wsgi, "extensions", None)
        if extensions is not None:  # /metrics counts every route's connections
            extensions["wsapp.websocket.tracker"] = tracker

        class Server(PyWSGIServer):
            """The pywsgi server carrying what wsapp's handler reads from it."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.settings = settings
                self.tracker = tracker

        self.server_class = Server
        stop_background = start_serving(self.wsgi)  # the feeds (--feed), for this worker
        closer = gevent.spawn(self._close_websockets_on_exit, tracker, settings, stop_background)
        try:
            super().run()
        finally:
            closer.kill(block=False)
            stop_background(settings.shutdown_timeout)  # a second call returns at once

    def _close_websockets_on_exit(self, tracker: ConnectionTracker, settings: Settings,
                                  stop_background: Any) -> None:
        """Once gunicorn asks the worker to stop, stop the feeds and close every WebSocket
        with 1001."""
        while self.alive:
            gevent.sleep(0.2)
        stop_background(settings.shutdown_timeout)
        n = tracker.close_all(CLOSE_GOING_AWAY, "server shutting down", settings.shutdown_timeout)
        self.log.info("wsapp: closed %d WebSocket connection(s) for shutdown", n)
