"""HTTP API: token minting, server config, presence."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from wsapp.auth import TokenSigner, api_key_ok, load_secret
from wsapp.hub import get_hub
from wsapp.messages import RequestError, check_channel

bp = Blueprint("api", __name__, url_prefix="/api")


def get_signer(app: Flask) -> TokenSigner:
    """The app's token signer (secret loaded or generated on first use)."""
    signer = app.extensions.get("wsapp.signer")
    if signer is None:
        s = app.config["WSAPP"]
        signer = app.extensions["wsapp.signer"] = TokenSigner(
            load_secret(s.secret, s.data_dir), s.token_ttl)
    return signer


def api_error(status: int, code: str, reason: str) -> tuple[Response, int]:
    """A JSON error body with the right status."""
    return jsonify(error=code, reason=reason), status


def require_key() -> tuple[Response, int] | None:
    """401 unless the request carries the API key (always passes in demo mode)."""
    if api_key_ok(current_app.config["WSAPP"].api_key, request.headers.get("Authorization")):
        return None
    return api_error(401, "unauthorized", "send Authorization: Bearer <WSAPP_API_KEY>")


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a RequestError naming what is wrong."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise RequestError("bad_json", "body must be a JSON object "
                           "(Content-Type: application/json)")
    return body


@bp.errorhandler(RequestError)
def on_request_error(exc: RequestError) -> tuple[Response, int]:
    return api_error(400, exc.code, exc.reason)


@bp.route("/tokens", methods=["POST"])
def mint_token() -> Any:
    """`{"user": id}` → a signed token for that user."""
    denied = require_key()
    if denied:
        return denied
    body = json_body()
    ttl = body.get("ttl")
    if ttl is not None and (not isinstance(ttl, (int, float)) or isinstance(ttl, bool)
                            or not 0 < ttl <= 30 * 86400):
        return api_error(400, "bad_request", "'ttl' must be seconds between 0 and 30 days")
    try:
        token, expires = get_signer(current_app).mint(body.get("user"), ttl)
    except ValueError as exc:
        return api_error(400, "bad_request", str(exc))
    return jsonify(token=token, user=body["user"], expires=expires)


@bp.route("/config")
def config() -> Any:
    """What pages need to know: demo mode or not."""
    return jsonify(demo=not current_app.config["WSAPP"].api_key)


@bp.route("/presence")
def presence() -> Any:
    """Members of a channel: `?channel=room:lobby`."""
    denied = require_key()
    if denied:
        return denied
    channel = request.args.get("channel", "")
    check_channel(channel)
    return jsonify(channel=channel, **get_hub(current_app).presence(channel))
