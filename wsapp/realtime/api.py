"""HTTP API (docs/api.md): tokens, publish, push, history, push records, presence.

Every /api error is JSON `{"error": code, "reason": text}` with the fitting status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from wsapp.realtime.auth import TokenSigner, api_key_ok, load_secret
from wsapp.realtime.engines.base import STATUSES
from wsapp.realtime.hub import get_hub
from wsapp.realtime.messages import (
    RequestError,
    check_channel,
    check_data_size,
    check_key,
    check_ttl,
    check_user,
)
from wsapp.realtime.pipeline import now_ms

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
    # `unavailable`: the store (Redis) is down, not the request's fault; retry later.
    status = {"unavailable": 503, "too_large": 413}.get(exc.code, 400)
    return api_error(status, exc.code, exc.reason)


@bp.errorhandler(HTTPException)
def on_http_error(exc: HTTPException) -> tuple[Response, int]:
    code = (exc.name or "error").lower().replace(" ", "_")
    return api_error(exc.code or 500, code, exc.description or code)


@bp.app_errorhandler(404)
def on_not_found(exc: HTTPException) -> Any:
    # Unmatched URLs never reach a blueprint's own handlers: answer /api/* in JSON here.
    if request.path.startswith("/api/"):
        return api_error(404, "not_found", f"no API endpoint {request.method} {request.path}")
    return exc


@bp.before_request
def _guard() -> tuple[Response, int] | None:
    """The key check for everything but the public endpoints; a body size cap."""
    settings = current_app.config["WSAPP"]
    limit = settings.max_publish_size + 4096
    if request.content_length is not None and request.content_length > limit:
        return api_error(413, "too_large", f"request body over {limit} bytes")
    if request.endpoint in ("api.config", "api.mint_token"):
        return None
    return require_key()


def _field(body: dict, name: str, kind: type | tuple, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise RequestError("bad_request", f"missing field '{name}'")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError("bad_request", f"'{name}' must be a {names}")
    return value


@bp.route("/publish", methods=["POST"])
def publish() -> Any:
    """`{"channel", "data", "key"?}` → `{"msg", "offset"}`: delivered to every subscriber."""
    body = json_body()
    channel = _field(body, "channel", str)
    check_channel(channel)
    if "data" not in body:
        raise RequestError("bad_request", "missing field 'data'")
    key = check_key(body.get("key"))
    check_data_size(body["data"], current_app.config["WSAPP"].max_publish_size)
    return jsonify(channel=channel,
                   **get_hub(current_app).publish(channel, body["data"], key=key))


@bp.route("/push", methods=["POST"])
def push() -> Any:
    """`{"user", "data", "category"?, "ttl"?, "key"?}` → delivered / stored / suppressed (429)."""
    body = json_body()
    user = check_user(_field(body, "user", str))
    if "data" not in body:
        raise RequestError("bad_request", "missing field 'data'")
    category = _field(body, "category", str, required=False)
    ttl = check_ttl(body.get("ttl"))
    key = check_key(body.get("key"))
    check_data_size(body["data"], current_app.config["WSAPP"].max_publish_size)
    result = get_hub(current_app).push(user, body["data"], category, ttl, key)
    return jsonify(user=user, **result), 429 if result["status"] == "suppressed" else 200


@bp.route("/history")
def history() -> Any:
    """`?channel=…&since=…&limit=…` → stored messages after `since`, oldest first."""
    channel = request.args.get("channel", "")
    check_channel(channel)
    try:
        since = int(request.args.get("since", 0))
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise RequestError("bad_request", "'since' and 'limit' must be integers") from None
    if since < 0 or not 1 <= limit <= 1000:
        raise RequestError("bad_request", "'since' must be >= 0 and 'limit' 1..1000")
    result = get_hub(current_app).store.history(channel, since, limit)
    return jsonify(channel=channel, **result)


@bp.route("/users/<user>/messages")
def user_messages(user: str) -> Any:
    """The push records of one user: `?status=pending|delivered|acked|suppressed|expired`."""
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise RequestError("bad_request", f"'status' must be one of {', '.join(STATUSES)}")
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise RequestError("bad_request", "'limit' must be an integer") from None
    if not 1 <= limit <= 1000:
        raise RequestError("bad_request", "'limit' must be 1..1000")
    records = get_hub(current_app).store.records(user, status, limit, now_ms())
    return jsonify(user=user, messages=records)


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
    channel = request.args.get("channel", "")
    check_channel(channel)
    return jsonify(channel=channel, **get_hub(current_app).presence(channel))
