"""The app protocol on /ws (docs/protocol.md): parse and validate requests, build replies.

Pure: strings in, dicts or strings out. Every rejection is a RequestError carrying the
documented error code, so the route can answer with an `error` frame and keep going.
"""

from __future__ import annotations

import json
import math
from typing import Any

from wsapp.realtime.auth import valid_user
from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.policy import check_channel

# op -> (required field, expected type) pairs; `id` is optional on every op.
OPS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "subscribe": (("channel", str),),
    "unsubscribe": (("channel", str),),
    "publish": (("channel", str),),
    "presence": (("channel", str),),
    "ping": (),
    "ack": (("msg", str),),
    "rpc": (("method", str),),
}

_SCALAR = (str, int, float, bool, type(None))


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 kept as is (smaller frames than \\u escapes). Strict: NaN or
    Infinity (from an app's hook, say) raise ValueError instead of going out as frames that
    every strict parser refuses."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(literal: str) -> float:
    """A JSON number with a fraction or exponent; ValueError when it overflows a double
    (1e999 would become Infinity, which no strict parser takes back)."""
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:40]} is not JSON: out of range of a double (Infinity)")
    return value


def loads(text: str | bytes) -> Any:
    """Strict JSON: NaN and Infinity (which Python's json takes, and browsers' JSON.parse
    refuses), numbers that overflow to them (1e999), and lone UTF-16 surrogates (valid
    escapes, but no text: they cannot be sent on) are errors, so nothing we accept breaks a
    subscriber or a store write."""
    value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if "\\ud" in raw or "\\uD" in raw:  # rare: only then look for a lone one
        try:
            dumps(value).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a lone surrogate (\\ud800-\\udfff) is not JSON text") from None
    return value


def parse_json(text: str | bytes, what: str) -> Any:
    """`loads(text)`, or RequestError bad_json saying what is wrong with `what` (the frame,
    the body): which constant or character is no JSON, when that is it."""
    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if "not JSON" in str(exc) else f"{what} is not valid JSON"
        raise RequestError("bad_json", detail) from None


def parse_request(text: str) -> dict[str, Any]:
    """A validated request dict from one text frame, or RequestError."""
    req = parse_json(text, "frame")
    if not isinstance(req, dict):
        raise RequestError("bad_json", "frame must be a JSON object")
    request_id = req.get("id")
    if not isinstance(request_id, _SCALAR):
        raise RequestError("bad_request", "'id' must be a string, number, boolean or null")
    op = req.get("op")
    if op not in OPS:
        raise RequestError("unknown_op", f"unknown op {op!r}" if op is not None
                           else "missing 'op'", request_id)
    for name, kind in OPS[op]:
        if name not in req:
            raise RequestError("bad_request", f"{op}: missing field '{name}'", request_id)
        if not isinstance(req[name], kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise RequestError("bad_request", f"{op}: '{name}' must be a "
                               f"{'/'.join(k.__name__ for k in kinds)}", request_id)
    if op == "publish" and "data" not in req:
        raise RequestError("bad_request", "publish: missing field 'data'", request_id)
    since = req.get("since")
    if op == "subscribe" and since is not None and (
            not isinstance(since, int) or isinstance(since, bool) or not 0 <= since <= MAX_OFFSET):
        raise RequestError("bad_request", "subscribe: 'since' must be an offset >= 0 or null",
                           request_id)
    t = req.get("t")
    if op == "ping" and t is not None and (not isinstance(t, (int, float))
                                           or isinstance(t, bool)):
        raise RequestError("bad_request", "ping: 't' must be a number", request_id)
    if "channel" in req:
        check_channel(req["channel"], request_id)
    return req


# -- the fields of a publish or push from the HTTP API or a feed (one set of rules) ----------

KEY_MAX = 200  # characters of an idempotency key
MAX_TTL = 366 * 86400.0  # seconds a push may wait for its ack: expiry times stay 64-bit
MAX_OFFSET = 2**62  # an offset any store keeps as a 64-bit integer


def check_user(user: Any) -> str:
    """A user id (the whole string: auth.valid_user), or RequestError bad_request."""
    if not valid_user(user):
        raise RequestError("bad_request", "'user' must be 1-64 characters of A-Z a-z 0-9 _ . @ -")
    return user


def check_ttl(ttl: Any) -> float | None:
    """A push's ttl in seconds (None: the default), or RequestError bad_request."""
    if ttl is None:
        return None
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not math.isfinite(ttl) \
            or not 0 < ttl <= MAX_TTL:
        raise RequestError("bad_request", "'ttl' must be seconds, more than 0 and at most a "
                           "year")
    return ttl


def check_key(key: Any) -> str | None:
    """An idempotency key (None: none), or RequestError bad_request."""
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX:
        raise RequestError("bad_request", f"'key' must be a string of 1-{KEY_MAX} characters")
    return key


def check_data_size(data: Any, limit: int) -> None:
    """RequestError too_large when `data` is over `limit` bytes of JSON."""
    size = len(dumps(data).encode("utf-8"))
    if size > limit:
        raise RequestError("too_large", f"data is {size} bytes; the limit is {limit}")


def ok(request_id: Any, **fields: Any) -> str:
    """An `ok` reply."""
    return dumps({"op": "ok", "id": request_id, **fields})


def error(request_id: Any, code: str, reason: str) -> str:
    """An `error` reply."""
    return dumps({"op": "error", "id": request_id, "code": code, "reason": reason})


def message(channel: str, offset: int, msg: str, data: Any, sender: str | None,
            ts: int) -> str:
    """A `message` delivery."""
    return message_raw(channel, offset, msg, dumps(data), sender, ts)


def message_raw(channel: str, offset: int | None, msg: str, data_json: str, sender: str | None,
                ts: int) -> str:
    """A `message` delivery around data that is already JSON (stored messages are)."""
    return (f'{{"op":"message","channel":{dumps(channel)},"offset":{dumps(offset)},'
            f'"msg":{dumps(msg)},"data":{data_json},"from":{dumps(sender)},"ts":{ts}}}')


_ENVELOPE_HEAD = '{"op":"message","channel":'


def envelope_offset(channel: str, text: str) -> int | None:
    """The offset of a `message` envelope built by message_raw (None: not stored), read
    without parsing the JSON: the hub does this for every message it delivers. A channel
    name holds no quote, so the first ',"offset":' after the head is the field."""
    start = text.find(',"offset":', len(_ENVELOPE_HEAD) + len(channel))
    if not text.startswith(_ENVELOPE_HEAD) or start < 0:
        raise ValueError(f"not a message envelope: {text[:80]!r}")
    start += 10
    value = text[start:text.index(",", start)]
    return None if value == "null" else int(value)
