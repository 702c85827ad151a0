"""Flask blueprints, one per feature."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach every blueprint to `app`."""
    from wsapp.routes import echo, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(echo.bp)
