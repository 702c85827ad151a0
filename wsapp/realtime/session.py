"""One /ws connection's request handling: limits, policy, and the op dispatch.

Kept apart from the Flask route so the rules (who may do what, what each op answers) read
in one place; the route only feeds it messages.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from wsapp.realtime.hub import Client, Hub
from wsapp.realtime.limits import TokenBucket
from wsapp.realtime.messages import RequestError, check_channel, dumps, error, ok, parse_request
from wsapp.realtime.options import RealtimeOptions

log = logging.getLogger("wsapp.realtime.session")


def _request_id(raw: str | bytes) -> Any:
    """The request's id if it has one (for error replies to frames not otherwise parsed)."""
    try:
        req = json.loads(raw)
        return req.get("id") if isinstance(req, dict) else None
    except (ValueError, TypeError, RecursionError):
        return None


class Session:
    """Handles the messages of one /ws client."""

    __slots__ = ("hub", "client", "settings", "demo", "msg_bucket", "byte_bucket")

    def __init__(self, hub: Hub, client: Client, settings: RealtimeOptions) -> None:
        self.hub = hub
        self.client = client
        self.settings = settings
        self.demo = not settings.api_key
        self.msg_bucket = TokenBucket(settings.rate_messages)
        self.byte_bucket = TokenBucket(settings.rate_bytes)

    def welcome(self) -> str:
        """The first frame the client gets."""
        return dumps({"op": "welcome", "user": self.client.user, "conn": self.client.id,
                      "server_time": int(time.time() * 1000), "demo": self.demo})

    def handle(self, raw: str | bytes, size: int) -> str | None:
        """The reply to one incoming frame of `size` payload bytes (None: nothing to say)."""
        if not self.msg_bucket.take(1) or not self.byte_bucket.take(size):
            return error(_request_id(raw), "rate_limited", "too many messages or bytes per "
                         "second; message dropped")
        if isinstance(raw, bytes):
            return error(None, "binary_not_supported", "send JSON text frames")
        request_id = None
        try:
            req = parse_request(raw)
            request_id = req.get("id")
            return getattr(self, "op_" + req["op"])(req, request_id)
        except RequestError as exc:
            return error(exc.request_id if exc.request_id is not None else request_id,
                         exc.code, exc.reason)
        except Exception:
            log.exception("error handling %r from %s", raw[:200], self.client.ws.peer)
            return error(request_id, "internal_error", "the server failed on this request; "
                         "it has been logged")

    # -- policy ------------------------------------------------------------------

    def _may_subscribe(self, channel: str, request_id: Any) -> None:
        kind = check_channel(channel, request_id)
        user = self.client.user
        if kind == "sys":
            return
        if user is None:
            raise RequestError("unauthorized", f"{channel} needs a token (connect with "
                               "?token=…)", request_id)
        if kind == "user" and channel != f"user:{user}":
            raise RequestError("forbidden", f"only that user may subscribe to {channel}",
                               request_id)

    def _may_publish(self, channel: str, request_id: Any) -> None:
        kind = check_channel(channel, request_id)
        if self.client.user is None:
            raise RequestError("unauthorized", "publishing needs a token", request_id)
        if kind != "room":
            raise RequestError("forbidden", f"clients may publish only to room:* channels, "
                               f"not {channel}", request_id)

    # -- ops -----------------------------------------------------------------------

    def op_subscribe(self, req: dict, request_id: Any) -> str:
        channel = req["channel"]
        self._may_subscribe(channel, request_id)
        client = self.client
        own = f"user:{client.user}"  # subscribed automatically; not the client's choice
        chosen = len(client.channels) - (own in client.channels)
        if channel not in client.channels and channel != own and \
                chosen >= self.settings.max_subscriptions:
            raise RequestError("too_many_subscriptions", f"at most "
                               f"{self.settings.max_subscriptions} channels per connection",
                               request_id)
        result = self.hub.subscribe_replay(client, channel, req.get("since"))
        return ok(request_id, channel=channel, **result)

    def op_unsubscribe(self, req: dict, request_id: Any) -> str:
        channel = req["channel"]
        if not self.hub.unsubscribe(self.client, channel):
            raise RequestError("not_subscribed", f"not subscribed to {channel}", request_id)
        return ok(request_id, channel=channel)

    def op_publish(self, req: dict, request_id: Any) -> str:
        channel = req["channel"]
        self._may_publish(channel, request_id)
        size = len(dumps(req["data"]).encode("utf-8"))
        if size > self.settings.max_publish_size:
            raise RequestError("too_large", f"data is {size} bytes; the limit is "
                               f"{self.settings.max_publish_size}", request_id)
        result = self.hub.publish(channel, req["data"], sender=self.client.user)
        return ok(request_id, channel=channel, **result)

    def op_presence(self, req: dict, request_id: Any) -> str:
        channel = req["channel"]
        self._may_subscribe(channel, request_id)
        return ok(request_id, channel=channel, **self.hub.presence(channel))

    def op_ping(self, req: dict, request_id: Any) -> str:
        return dumps({"op": "pong", "t": req.get("t"), "id": request_id,
                      "server_time": int(time.time() * 1000)})

    def op_ack(self, req: dict, request_id: Any) -> str:
        user = self.client.user
        if user is None:
            raise RequestError("unauthorized", "acks need a token", request_id)
        status = self.hub.ack(user, req["msg"])
        if status is None:
            raise RequestError("not_found", f"no personal message {req['msg']!r} for {user}",
                               request_id)
        return ok(request_id, msg=req["msg"], status=status)
