"""create_app(): the server's Flask app, the real-time layer plus the demo site."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from flask import Flask

from wsapp.config import Settings, env_name, from_env

_PACKAGE = Path(__file__).resolve().parent


def template_folder() -> Path:
    """The demo's templates: the copy an installed wheel carries inside the package (the
    build maps `templates/` there), else `templates/` beside the package in a checkout.

    The packaged copy is looked for first: installed, the folder beside the package is
    site-packages, where another distribution may have dropped a `templates/` of its own.
    """
    packaged = _PACKAGE / "demo" / "templates"
    return packaged if packaged.is_dir() else _PACKAGE.parent / "templates"


def create_app(settings: Settings | None = None) -> Flask:
    """The server's app: Flask + Realtime(app) + the demo. `settings` default to WSAPP_*
    environment variables; they reach the extension as app.config["WSAPP_*"], like any
    app's."""
    settings = settings or from_env()
    app = Flask("wsapp", template_folder=str(template_folder()),
                static_folder=str(_PACKAGE / "demo" / "static"))
    app.config.update({env_name(f.name): getattr(settings, f.name) for f in fields(settings)})
    from wsapp import demo
    from wsapp.realtime.ext import Realtime

    demo.register(app, Realtime(app))
    return app
