"""wsapp: real-time push for Flask on gevent."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from wsapp.config import Settings, from_env

__all__ = ["create_app", "Settings"]
__version__ = "0.1.0"

_ROOT = Path(__file__).resolve().parent


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app with every wsapp blueprint; `settings` default to WSAPP_* env vars."""
    settings = settings or from_env()
    templates = _ROOT.parent / "templates"
    if not templates.is_dir():  # installed as a package: templates ship inside it
        templates = _ROOT / "templates"
    app = Flask(__name__, template_folder=str(templates), static_folder=str(_ROOT / "static"))
    app.config["WSAPP"] = settings
    from wsapp.routes import register

    register(app)
    return app
