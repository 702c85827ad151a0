"""The demo site: pages, the dashboard publisher, the task runner, /ws/echo.

A consumer of the public real-time API, nothing more: it is how we prove the API is enough.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the demo pages and their server side."""
    from wsapp.demo import echo, jobs, views

    app.register_blueprint(views.bp)
    app.register_blueprint(echo.bp)
    app.register_blueprint(jobs.bp)
