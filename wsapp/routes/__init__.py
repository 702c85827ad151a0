"""Flask blueprints, one per feature."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach every blueprint to `app`."""
    from wsapp.routes import api, demo, echo, metrics, pages, realtime

    app.register_blueprint(pages.bp)
    app.register_blueprint(echo.bp)
    app.register_blueprint(realtime.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(demo.bp)
