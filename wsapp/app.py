"""create_app(): the server's Flask app — Flask, plus `Realtime(app)`, plus the demo."""

from __future__ import annotations

from dataclasses import fields

from flask import Flask

from wsapp.config import Settings, env_name, from_env


def create_app(settings: Settings | None = None) -> Flask:
    """The server's app: a plain Flask app, `Realtime(app)` and the demo, as any host app
    would add them. `settings` default to WSAPP_* environment variables; they reach the
    extension as app.config["WSAPP_*"], like any app's."""
    settings = settings or from_env()
    app = Flask("wsapp", static_folder=None)  # the demo serves its own files (a blueprint)
    app.config.update({env_name(f.name): getattr(settings, f.name) for f in fields(settings)})
    from wsapp import demo
    from wsapp.realtime.ext import Realtime

    demo.init_app(app, Realtime(app))
    return app
