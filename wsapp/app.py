"""create_app(): the server's Flask app, the real-time layer plus the demo site."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from wsapp.config import Settings, from_env

_PACKAGE = Path(__file__).resolve().parent


def template_folder() -> Path:
    """The demo's templates: `templates/` beside the package in a checkout, else the copy the
    wheel carries inside it (the build maps the one to the other)."""
    source = _PACKAGE.parent / "templates"
    return source if source.is_dir() else _PACKAGE / "demo" / "templates"


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app with every wsapp blueprint; `settings` default to WSAPP_* env vars."""
    settings = settings or from_env()
    app = Flask("wsapp", template_folder=str(template_folder()),
                static_folder=str(_PACKAGE / "demo" / "static"))
    app.config["WSAPP"] = settings
    from wsapp import demo, realtime

    realtime.register(app)
    demo.register(app)
    return app
