"""The HTTP API (docs/api.md), under WSAPP_URL_PREFIX + /api: tokens, publish, push, history,
push records, presence, revocation.

Every error is JSON `{"error": code, "reason": text}` with the fitting status, unknown paths
under /api included (a catch-all route of this blueprint: nothing app-wide is registered).
Everything but /config and /tokens needs the API key, unless the server is in demo mode.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from wsapp.realtime.auth import api_key_ok
from wsapp.realtime.engines.base import STATUSES
from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.messages import (
    MAX_OFFSET,
    check_data_size,
    check_key,
    check_ttl,
    check_user,
    parse_json,
)
from wsapp.realtime.openapi import document
from wsapp.realtime.options import BODY_SLACK
from wsapp.realtime.pipeline import now_ms
from wsapp.realtime.policy import check_channel
from wsapp.realtime.state import AppState, state_of

bp = Blueprint("wsapp_api", __name__)

# Open without the key (mint_token checks it itself: the demo mode mints for anyone).
PUBLIC = ("wsapp_api.config", "wsapp_api.mint_token", "wsapp_api.not_found",
          "wsapp_api.openapi")
MAX_TOKEN_TTL = 30 * 86400.0  # the longest token the API mints


def api_error(status: int, code: str, reason: str) -> tuple[Response, int]:
    """A JSON error body with the right status."""
    return jsonify(error=code, reason=reason), status


def require_key(state: AppState) -> tuple[Response, int] | None:
    """401 unless the request carries the API key (always passes in demo mode)."""
    if api_key_ok(state.settings.api_key, request.headers.get("Authorization")):
        return None
    return api_error(401, "unauthorized", "send Authorization: Bearer <WSAPP_API_KEY>")


def json_body() -> dict[str, Any]:
    """The request's JSON object (strict: no NaN or Infinity), or a RequestError.

    Read from the stream with a bound, chunked bodies too: a declared Content-Length over the
    limit is refused before this (_guard), and a body that runs past it is refused here
    without being read whole.
    """
    if not request.is_json:
        raise RequestError("bad_json", "send a JSON object with Content-Type: "
                           "application/json")
    limit = body_limit(state_of())
    try:
        raw = request.stream.read(limit + 1)
    except OSError:  # the client went before its Content-Length: nobody to answer, no fault
        raise RequestError("bad_request", "the body ended before its Content-Length") from None
    if len(raw) > limit:
        raise RequestError("too_large", f"request body over {limit} bytes")
    body = parse_json(raw, "the body")
    if not isinstance(body, dict):
        raise RequestError("bad_json", "the body must be a JSON object")
    return body


def body_limit(state: AppState) -> int:
    """The largest request body: a publish's data limit plus room for the other fields."""
    return state.settings.max_publish_size + BODY_SLACK


STATUS = {"unavailable": 503, "too_large": 413}  # by error code; the others are 400


@bp.errorhandler(RequestError)
def on_request_error(exc: RequestError) -> tuple[Response, int]:
    # `unavailable`: the store (Redis) is down, not the request's fault; retry later.
    return api_error(STATUS.get(exc.code, 400), exc.code, exc.reason)


@bp.errorhandler(HTTPException)
def on_http_error(exc: HTTPException) -> tuple[Response, int]:
    code = (exc.name or "error").lower().replace(" ", "_")
    return api_error(exc.code or 500, code, exc.description or code)


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(rest: str) -> tuple[Response, int]:
    """Unknown paths under /api answer in JSON too."""
    return api_error(404, "not_found", f"no API endpoint {request.method} {request.path}")


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@bp.before_request
def _guard() -> tuple[Response, int] | None:
    """A body size cap; writes only as JSON or with credentials; the key check for
    everything but the public endpoints."""
    state = state_of()
    limit = body_limit(state)
    if request.content_length is not None and request.content_length > limit:
        return api_error(413, "too_large", f"request body over {limit} bytes")
    if (request.method not in SAFE_METHODS and not request.is_json
            and "Authorization" not in request.headers):
        # A cross-site <form> can POST text/plain, urlencoded or multipart without any
        # preflight, but never JSON nor an Authorization header: in demo mode (no key) this
        # is what keeps another site's page from writing through a visitor's browser.
        return api_error(415, "unsupported_media_type", "send the body as Content-Type: "
                         "application/json (or an Authorization header)")
    if request.endpoint in PUBLIC:
        return None
    return require_key(state)


@bp.after_request
def _nosniff(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...],
           required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise RequestError("bad_request", f"missing field '{name}'")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError("bad_request", f"'{name}' must be a {names}")
    return value


def _data(state: AppState, body: dict[str, Any]) -> Any:
    if "data" not in body:
        raise RequestError("bad_request", "missing field 'data'")
    check_data_size(body["data"], state.settings.max_publish_size)
    return body["data"]


@bp.route("/publish", methods=["POST"])
def publish() -> Any:
    """`{"channel", "data", "key"?}` → `{"msg", "offset"}`: delivered to every subscriber;
    a repeated `key` publishes nothing and answers the first result (`duplicate: true`)."""
    state = state_of()
    body = json_body()
    channel = _channel(body)
    data = _data(state, body)
    key = check_key(body.get("key"))
    return jsonify(channel=channel, **state.hub.publish(channel, data, key=key))


@bp.route("/push", methods=["POST"])
def push() -> Any:
    """`{"user", "data", "category"?, "ttl"?, "key"?}` → delivered / stored / suppressed
    (429); a repeated `key` pushes nothing and answers the first result."""
    state = state_of()
    body = json_body()
    user = _user(body)
    category = _field(body, "category", str, required=False)
    ttl = check_ttl(body.get("ttl"))
    key = check_key(body.get("key"))
    data = _data(state, body)
    result = state.hub.push(user, data, category, ttl, key)
    return jsonify(user=user, **result), 429 if result["status"] == "suppressed" else 200


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise RequestError("bad_request", f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise RequestError("bad_request", f"'{name}' must be {low}..{high}")
    return value


@bp.route("/history")
def history() -> Any:
    """`?channel=…&since=…&limit=…` → stored messages after `since`, oldest first."""
    channel = request.args.get("channel", "")
    check_channel(channel)
    since = _int_arg("since", 0, 0, MAX_OFFSET)
    limit = _int_arg("limit", 100, 1, 1000)
    return jsonify(channel=channel, **state_of().hub.store.history(channel, since, limit))


@bp.route("/users/<user>/messages")
def user_messages(user: str) -> Any:
    """The push records of one user: `?status=pending|delivered|acked|suppressed|expired`."""
    check_user(user)
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise RequestError("bad_request", f"'status' must be one of {', '.join(STATUSES)}")
    limit = _int_arg("limit", 100, 1, 1000)
    records = state_of().hub.store.records(user, status, limit, now_ms())
    return jsonify(user=user, messages=records)


@bp.route("/users/<user>/revoke", methods=["POST"])
def revoke(user: str) -> Any:
    """Refuse every token the user holds now and close their connections (4401)."""
    state_of().revoke_tokens(check_user(user))
    return jsonify(user=user, revoked=True)


def _user(body: dict[str, Any]) -> str:
    return check_user(_field(body, "user", str))


def _channel(body: dict[str, Any]) -> str:
    channel = _field(body, "channel", str)
    check_channel(channel)
    return channel


def _reason(body: dict[str, Any]) -> str:
    reason = _field(body, "reason", str, required=False) or ""
    if len(reason.encode("utf-8", "surrogatepass")) > 100:
        raise RequestError("bad_request", "'reason' must be at most 100 bytes")
    return reason


# Server-side operations on connections: they reach the user's connections on every process.

@bp.route("/subscribe", methods=["POST"])
def subscribe() -> Any:
    """`{"user", "channel"}`: subscribe every connection of the user to the channel."""
    body = json_body()
    user, channel = _user(body), _channel(body)
    state_of().hub.request_subscribe(user, channel)
    return jsonify(user=user, channel=channel)


@bp.route("/unsubscribe", methods=["POST"])
def unsubscribe() -> Any:
    """`{"user", "channel", "reason"?}`: unsubscribe every connection of the user."""
    body = json_body()
    user, channel = _user(body), _channel(body)
    state_of().hub.request_unsubscribe(user, channel, _reason(body))
    return jsonify(user=user, channel=channel)


@bp.route("/close_channel", methods=["POST"])
def close_channel() -> Any:
    """`{"channel", "reason"?}`: unsubscribe everybody from the channel."""
    body = json_body()
    channel = _channel(body)
    state_of().hub.request_close_channel(channel, _reason(body))
    return jsonify(channel=channel)


@bp.route("/disconnect", methods=["POST"])
def disconnect() -> Any:
    """`{"user", "code"?, "reason"?}`: close every connection of the user (code 4000-4999)."""
    body = json_body()
    user = _user(body)
    code = _field(body, "code", int, required=False) or 4000
    if not 4000 <= code <= 4999:
        raise RequestError("bad_request", "'code' must be an application close code, "
                           "4000..4999")
    state_of().hub.request_disconnect(user, code, _reason(body))
    return jsonify(user=user, code=code)


@bp.route("/tokens", methods=["POST"])
def mint_token() -> Any:
    """`{"user": id, "ttl"?}` → a signed token for that user (the API key, unless demo)."""
    state = state_of()
    denied = require_key(state)
    if denied:
        return denied
    body = json_body()
    ttl = check_ttl(body.get("ttl"))
    if ttl is not None and ttl > MAX_TOKEN_TTL:
        raise RequestError("bad_request", "'ttl' must be at most 30 days")
    user = _user(body)
    try:
        token, expires = state.tokens.mint(user, ttl)
    except ValueError as exc:  # this server only checks tokens (no private key)
        return api_error(400, "bad_request", str(exc))
    return jsonify(token=token, user=user, expires=expires)


@bp.route("/config")
def config() -> Any:
    """What pages need to know: demo mode or not, and where the client is."""
    state = state_of()
    return jsonify(demo=state.demo, client=state.client_url)


@bp.route("/openapi.json")
def openapi() -> Any:
    """This API as an OpenAPI 3.1 document."""
    return jsonify(document(state_of().settings.url_prefix))


@bp.route("/presence")
def presence() -> Any:
    """Members of a channel: `?channel=room:lobby`."""
    channel = request.args.get("channel", "")
    check_channel(channel)
    return jsonify(channel=channel, **state_of().hub.presence(channel))
