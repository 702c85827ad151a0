"""/ws/echo: echoes text as text and binary as binary, in plain gevent-websocket style."""

from __future__ import annotations

from flask import Blueprint, request

bp = Blueprint("echo", __name__)


@bp.route("/ws/echo", websocket=True)
def echo() -> str:
    """Echo every message until the client closes."""
    ws = request.environ["wsgi.websocket"]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message, binary=isinstance(message, bytes))
    return ""
