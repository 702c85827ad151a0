"""A feed message: parse and validate it with the HTTP API's rules, or say why it is poison.

    {"op": "push", "user": ID, "data": ANY, "category"?: STR, "ttl"?: SECONDS, "key"?: STR}
    {"op": "publish", "channel": NAME, "data": ANY, "key"?: STR}

Strict: an unknown op or field, a field of the wrong type, a bad user id or channel name, data
over max_publish_size, a ttl that is not a finite number > 0 — each makes the message poison
(dead-lettered with the reason, never retried). null counts as absent for the optional fields,
as in the HTTP API. The text is refused unparsed past the size the API accepts in one body
(max_publish_size + 4 KiB), so one huge message cannot hold the hub in json.loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.messages import (
    check_channel,
    check_data_size,
    check_key,
    check_ttl,
    check_user,
    loads,
)

ENVELOPE = 4096  # bytes a message may carry beyond its data (the HTTP API's allowance too)
FIELDS = {"push": {"op", "user", "data", "category", "ttl", "key"},
          "publish": {"op", "channel", "data", "key"}}


class Poison(Exception):
    """A message that can never be applied; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class FeedMessage:
    """A valid feed message."""

    op: str  # "push" or "publish"
    target: str  # the user (push) or the channel (publish)
    data: Any
    category: str | None = None
    ttl: float | None = None
    key: str | None = None


def parse_message(body: bytes | str, max_publish_size: int) -> FeedMessage:
    """The message in `body`, or Poison saying what is wrong with it."""
    limit = max_publish_size + ENVELOPE
    if len(body) > limit:
        raise Poison(f"message is {len(body)} bytes; the limit is {limit}")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Poison(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = loads(body)  # strict: no NaN, Infinity or lone surrogates
    except (ValueError, RecursionError) as exc:
        raise Poison(f"not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(doc, dict):
        raise Poison(f"a message must be a JSON object, not {type(doc).__name__}")
    op = doc.get("op")
    if op not in FIELDS:
        raise Poison(f"unknown op {op!r}: use 'push' or 'publish'" if op is not None
                     else "missing field 'op'")
    unknown = sorted(set(doc) - FIELDS[op])
    if unknown:
        raise Poison(f"{op}: unknown field(s) {', '.join(map(repr, unknown))}")
    if "data" not in doc:
        raise Poison(f"{op}: missing field 'data'")
    try:
        check_data_size(doc["data"], max_publish_size)
        key = check_key(doc.get("key"))
        if op == "publish":
            channel = doc.get("channel")
            if not isinstance(channel, str):
                raise RequestError("bad_request", "'channel' must be a string")
            check_channel(channel)
            return FeedMessage(op, channel, doc["data"], key=key)
        category = doc.get("category")
        if category is not None and not isinstance(category, str):
            raise RequestError("bad_request", "'category' must be a string")
        return FeedMessage(op, check_user(doc.get("user")), doc["data"], category,
                           check_ttl(doc.get("ttl")), key)
    except RequestError as exc:
        raise Poison(f"{op}: {exc.reason}") from None
