"""The real-time layer: channels, users, presence, recovery, per-user push, the /ws protocol,
the HTTP API and the JS client. Built on wsapp.websocket; knows nothing of the demo."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the real-time endpoints (/ws, /api, /metrics, /healthz, the JS client)."""
    from wsapp.realtime import api, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
