"""The real-time layer's endpoints besides the API: /ws (docs/protocol.md), /metrics,
/healthz and the JS client, all under WSAPP_URL_PREFIX."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory

from wsapp.realtime.auth import api_key_ok
from wsapp.realtime.exceptions import Reject
from wsapp.realtime.session import Session
from wsapp.realtime.state import state_of
from wsapp.websocket.exceptions import WebSocketError
from wsapp.websocket.frames import CLOSE_INTERNAL_ERROR

bp = Blueprint("wsapp", __name__)
log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"


@bp.after_request
def _nosniff(resp: Response) -> Response:
    """JSON and JavaScript answers are never to be sniffed as anything else."""
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


@bp.route("/ws", websocket=True)
def ws_endpoint() -> str:
    """Authenticate (the app's hook, else ?token=), then answer requests until the client
    leaves."""
    ws = request.environ["wsgi.websocket"]
    state = state_of()
    try:
        identity = state.authenticate()
    except Reject as refusal:
        ws.close(refusal.close_code, refusal.reason or refusal.error_code)
        return ""
    except Exception:
        log.exception("authenticate failed for %s", ws.peer)
        ws.close(CLOSE_INTERNAL_ERROR, "authentication failed")
        return ""
    hub = state.hub
    client = hub.connect(ws, identity.user if identity is not None else None)
    session = Session(state, client, identity)
    try:
        try:
            session.connected()
        except Reject as refusal:
            ws.close(refusal.close_code, refusal.reason or refusal.error_code)
            return ""
        ws.send(session.welcome())
        hub.deliver_pending(client)  # personal messages waiting since the last visit
        while True:
            raw = ws.receive()
            if raw is None:
                break
            reply = session.handle(raw, ws.last_message_size)
            if reply is not None:
                ws.send(reply)
    except WebSocketError:
        pass  # cut off while sending (a slow reader, a send timeout): nothing more to do
    finally:
        hub.disconnect(client)
        session.finished()
    return ""


@bp.route("/metrics")
def metrics() -> Response | tuple[Response, int]:
    """Every figure, scraped (with the API key, unless the server is in demo mode: the
    figures name channels, user:<id> ones included)."""
    state = state_of()
    if not api_key_ok(state.settings.api_key, request.headers.get("Authorization")):
        return jsonify(error="unauthorized",
                       reason="send Authorization: Bearer <WSAPP_API_KEY>"), 401
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(state.metrics), mimetype=CONTENT_TYPE_LATEST)


@bp.route("/healthz")
def healthz() -> tuple[Response, int]:
    """For load balancers and monitors: each opened engine's state (store, broker, presence)
    and each feed's. 200 "ok"; 503 "degraded" while an engine is down (the process still
    serves its own connections, but pushes, history and other processes' messages fail: a
    check must see it). A feed that is down does not degrade it: its messages wait at the
    source, and /healthz lists its state."""
    state = state_of()
    engines = state.hub.engines.health()
    down = [kind for kind, health in engines.items() if health.get("state") != "up"]
    extra = {"feeds": state.feeds.health()} if state.feeds is not None else {}
    return (jsonify(status="degraded" if down else "ok", engines=engines, **extra),
            503 if down else 200)


@bp.route("/wsapp.js")
def client() -> Response:
    """The browser client: an ES module, no build step (rt.client_url)."""
    return send_from_directory(STATIC, "wsapp.js", mimetype="text/javascript")
