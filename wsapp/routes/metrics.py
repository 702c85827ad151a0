"""/metrics (Prometheus text format)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from flask.blueprints import BlueprintSetupState
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wsapp.hub import get_hub
from wsapp.metrics import make_registry

bp = Blueprint("metrics", __name__)


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    # At registration, so the fan-out histogram sees every publish from the start.
    app = state.app
    app.extensions["wsapp.metrics"] = make_registry(
        get_hub(app), lambda: app.extensions.get("wsapp.tracker"))


@bp.route("/metrics")
def metrics() -> Response:
    """Every figure, scraped."""
    return Response(generate_latest(current_app.extensions["wsapp.metrics"]),
                    mimetype=CONTENT_TYPE_LATEST)
