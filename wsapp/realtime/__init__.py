"""The real-time layer: channels, users, presence, recovery, per-user push, the /ws protocol,
the HTTP API and the JS client. Built on wsapp.websocket; knows nothing of the demo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


def register(app: Flask) -> None:
    """Attach the real-time endpoints (/ws, /api, /metrics, /healthz, the JS client)."""
    from wsapp.realtime import api, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)


def start_serving(app: Any) -> Callable[[float], None]:
    """Start what runs beside a server while it serves `app`: the feeds of its settings
    (--feed). Returns the function that stops them, waiting up to its argument in seconds.

    The server calls this when it starts serving (wsapp.server.serve_forever, the gunicorn
    worker), never an import or a request: a process that only builds the app starts nothing.
    Any WSGI app is accepted; one that is not a wsapp app has nothing to start.
    """
    if not isinstance(app, Flask):
        return _nothing
    from wsapp.realtime.feeds.runner import start_feeds

    feeds = start_feeds(app)
    return feeds.stop if feeds is not None else _nothing


def _nothing(timeout: float = 0.0) -> None:
    """Nothing was started: nothing to stop."""
