"""The real-time layer's endpoints: /ws (docs/protocol.md), /metrics, /healthz, the JS client."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory
from flask.blueprints import BlueprintSetupState
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wsapp.realtime.api import get_signer
from wsapp.realtime.hub import get_hub
from wsapp.realtime.metrics import make_registry
from wsapp.realtime.session import Session

bp = Blueprint("realtime", __name__)

CLOSE_UNAUTHORIZED = 4401
STATIC = Path(__file__).resolve().parent / "static"


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    # At registration, so the fan-out histogram sees every publish from the start.
    app = state.app
    app.extensions["wsapp.realtime.metrics"] = make_registry(
        get_hub(app), lambda: app.extensions.get("wsapp.websocket.tracker"))


@bp.route("/ws", websocket=True)
def ws_endpoint() -> str:
    """Authenticate by ?token=, then answer requests until the client leaves."""
    ws = request.environ["wsgi.websocket"]
    settings = current_app.config["WSAPP"]
    user = None
    token = request.args.get("token")
    if token:
        try:
            user = get_signer(current_app).verify(token)
        except ValueError as exc:
            ws.close(CLOSE_UNAUTHORIZED, f"unauthorized: {exc}")
            return ""
    hub = get_hub(current_app)
    client = hub.connect(ws, user)
    session = Session(hub, client, settings)
    try:
        ws.send(session.welcome())
        hub.deliver_pending(client)  # personal messages waiting since the last visit
        while True:
            raw = ws.receive()
            if raw is None:
                break
            reply = session.handle(raw, ws.last_message_size)
            if reply is not None:
                ws.send(reply)
    finally:
        hub.disconnect(client)
    return ""


@bp.route("/metrics")
def metrics() -> Response:
    """Every figure, scraped."""
    return Response(generate_latest(current_app.extensions["wsapp.realtime.metrics"]),
                    mimetype=CONTENT_TYPE_LATEST)


@bp.route("/healthz")
def healthz() -> Response:
    """Liveness for load balancers; each feed's state and counts when there are feeds (a
    feed that is down does not make the server unhealthy: its messages wait at the source)."""
    feeds = current_app.extensions.get("wsapp.feeds")
    return jsonify(status="ok", **({"feeds": feeds.health()} if feeds is not None else {}))


@bp.route("/static/wsapp.js")
def client() -> Response:
    """The browser client (an ES module, no build step)."""
    return send_from_directory(STATIC, "wsapp.js", mimetype="text/javascript")
