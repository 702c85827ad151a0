"""/ws: the app protocol endpoint (docs/protocol.md)."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from wsapp.hub import get_hub
from wsapp.routes.api import get_signer
from wsapp.session import Session

bp = Blueprint("realtime", __name__)

CLOSE_UNAUTHORIZED = 4401


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
