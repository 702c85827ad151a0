"""One /ws connection's request handling: limits, policy, hooks, RPC and the op dispatch.

Kept apart from the route so the rules (who may do what, what each op answers) read in one
place; the route only feeds it messages. The app's hooks run here, in the connection's own
greenlet and request context (a slow hook delays only its own connection); an RPC runs in a
greenlet of its own, so the connection keeps reading (pongs, other requests) meanwhile, at
most `rpc_concurrency` at once. Whatever a hook or RPC raises becomes an `error` reply with
the request's id — Reject's code, or what the app's on_error handlers make of it, else
`internal_error` with the traceback logged — and the connection stays.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import gevent
from flask import copy_current_request_context

from wsapp.realtime.auth import Identity
from wsapp.realtime.client import Client
from wsapp.realtime.exceptions import Reject, RequestError
from wsapp.realtime.messages import dumps, error, loads, ok, parse_request
from wsapp.websocket.exceptions import WebSocketError

if TYPE_CHECKING:
    from wsapp.realtime.state import AppState

log = logging.getLogger(__name__)


# A request's id read from the last bytes of a message that is not parsed (one dropped over
# the rate limit): `..., "id": 7}` at the very end, as wsapp.js writes it. Best effort: the
# reply only ever goes back to the sender, and a message not written so gets id null.
_TAIL_ID = re.compile(rb'[,{]\s*"id"\s*:\s*(-?\d{1,15}|"[^"\\]{0,64}")\s*}\s*$')


def tail_request_id(tail: bytes) -> Any:
    """The id of a dropped request from its last bytes (at most 512, so this costs little):
    a small request is all there and parsed; of a larger one, an id written last (_TAIL_ID).
    None when neither shows one."""
    try:
        req = loads(tail)  # strict: an id of NaN or 1e999 could not be sent back
        return req.get("id") if isinstance(req, dict) else None
    except (ValueError, RecursionError):
        pass
    match = _TAIL_ID.search(tail)
    if match is None:
        return None
    try:
        return loads(match.group(1))
    except ValueError:
        return None


class Session:
    """Handles the messages of one /ws client."""

    __slots__ = ("state", "hub", "client", "identity", "settings", "rpcs")

    def __init__(self, state: AppState, client: Client, identity: Identity | None) -> None:
        self.state = state
        self.hub = state.hub
        self.client = client
        self.identity = identity
        self.settings = state.settings
        self.rpcs: set[gevent.Greenlet] = set()
        # The rate limit is applied by the WebSocket layer from frame headers: a message over
        # it is dropped before it is read, inflated or parsed, and never reaches handle().
        client.ws.limit_rate(self.settings.rate_messages, self.settings.rate_bytes,
                             self.settings.max_dropped, self.dropped)

    def welcome(self) -> str:
        """The first frame the client gets."""
        return dumps({"op": "welcome", "user": self.client.user, "conn": self.client.id,
                      "server_time": int(time.time() * 1000), "demo": self.state.demo})

    # -- lifecycle: the app's on_connect / on_disconnect -------------------------------

    def connected(self) -> None:
        """Run the app's on_connect hooks; Reject refuses the connection (the route closes
        it), anything else is logged and the connection stays."""
        for hook in self.state.hooks.connect:
            try:
                hook(self.client.user, self.client)
            except Reject:
                raise
            except Exception:
                log.exception("on_connect hook %s failed", getattr(hook, "__name__", hook))

    def finished(self) -> None:
        """The connection has gone: stop its RPCs, run the app's on_disconnect hooks."""
        if self.rpcs:
            gevent.killall(list(self.rpcs), block=False)
        for hook in self.state.hooks.disconnect:
            try:
                hook(self.client.user, self.client)
            except Exception:
                log.exception("on_disconnect hook %s failed", getattr(hook, "__name__", hook))

    # -- requests ----------------------------------------------------------------------

    def dropped(self, tail: bytes) -> None:
        """A message over the rate limit was dropped unread: say so, with its id if its last
        bytes show one."""
        try:
            self.client.ws.send(error(tail_request_id(tail), "rate_limited", "too many "
                                      "messages or bytes per second; message dropped"))
        except WebSocketError:
            pass  # gone meanwhile: nobody to tell

    def handle(self, raw: str | bytes, size: int) -> str | None:
        """The reply to one incoming frame of `size` payload bytes (None: nothing to say).

        WebSocketError (the connection ended while a reply, e.g. a replay, was being sent)
        goes to the route, which ends."""
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
        except WebSocketError:
            raise
        except Exception as exc:
            return self.failed(exc, request_id, raw)

    def failed(self, exc: Exception, request_id: Any, what: Any) -> str:
        """The error reply for an exception from a hook, an RPC or the server itself."""
        if isinstance(exc, Reject):
            return error(request_id, exc.error_code, exc.reason or exc.error_code)
        try:
            mapped = self.state.hooks.map_error(exc)
        except Exception:
            log.exception("on_error handler failed")
            mapped = None
        if mapped is not None:
            return error(request_id, mapped.error_code, mapped.reason or mapped.error_code)
        log.error("error handling %.200r from %s (user %s)", what, self.client.ws.peer,
                  self.client.user, exc_info=exc)
        return error(request_id, "internal_error", "the server failed on this request; it "
                     "has been logged")

    # -- ops -----------------------------------------------------------------------

    def _grants(self) -> tuple[str, ...]:
        return self.identity.channels if self.identity is not None else ()

    def op_subscribe(self, req: dict[str, Any], request_id: Any) -> str:
        channel = req["channel"]
        self.state.hooks.policy.may_subscribe(self.client.user, self._grants(), channel,
                                           request_id)
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

    def op_unsubscribe(self, req: dict[str, Any], request_id: Any) -> str:
        channel = req["channel"]
        if not self.hub.unsubscribe(self.client, channel):
            raise RequestError("not_subscribed", f"not subscribed to {channel}", request_id)
        return ok(request_id, channel=channel)

    def op_publish(self, req: dict[str, Any], request_id: Any) -> str:
        channel = req["channel"]
        self._check_size(req["data"], request_id)
        _, data = self.state.hooks.policy.may_publish(self.client.user, channel,
                                                         req["data"], request_id)
        if data is not req["data"]:  # a hook replaced it: the limit holds for that too
            self._check_size(data, request_id)
        result = self.hub.publish(channel, data, sender=self.client.user)
        return ok(request_id, channel=channel, **result)

    def _check_size(self, data: Any, request_id: Any) -> None:
        size = len(dumps(data).encode("utf-8"))
        if size > self.settings.max_publish_size:
            raise RequestError("too_large", f"data is {size} bytes; the limit is "
                               f"{self.settings.max_publish_size}", request_id)

    def op_presence(self, req: dict[str, Any], request_id: Any) -> str:
        channel = req["channel"]
        options = self.state.hooks.policy.may_read(self.client.user, self._grants(), channel,
                                                request_id)
        if not options.presence:
            raise RequestError("forbidden", f"presence is off for {channel}", request_id)
        return ok(request_id, channel=channel, **self.hub.presence(channel))

    def op_ping(self, req: dict[str, Any], request_id: Any) -> str:
        return dumps({"op": "pong", "t": req.get("t"), "id": request_id,
                      "server_time": int(time.time() * 1000)})

    def op_ack(self, req: dict[str, Any], request_id: Any) -> str:
        user = self.client.user
        if user is None:
            raise RequestError("unauthorized", "acks need a token", request_id)
        status = self.hub.ack(user, req["msg"])
        if status is None:
            raise RequestError("not_found", f"no personal message {req['msg']!r} for {user}",
                               request_id)
        return ok(request_id, msg=req["msg"], status=status)

    def op_rpc(self, req: dict[str, Any], request_id: Any) -> str | None:
        method = req["method"]
        handler = self.state.hooks.rpc.get(method)
        if handler is None:
            raise RequestError("unknown_method", f"no RPC method {method!r}", request_id)
        if len(self.rpcs) >= self.settings.rpc_concurrency:
            raise RequestError("too_many_requests", f"at most {self.settings.rpc_concurrency} "
                               "RPCs at once per connection", request_id)
        params = req.get("params")

        @copy_current_request_context
        def call() -> None:
            try:  # a result that is not JSON fails in ok(): an internal_error too
                reply = ok(request_id, result=handler(self.client.user, params))
            except Exception as exc:
                reply = self.failed(exc, request_id, f"rpc {method}")
            try:
                self.client.ws.send(reply)
            except WebSocketError:
                pass  # the connection went while the RPC ran: nobody to answer

        greenlet = gevent.spawn(call)
        self.rpcs.add(greenlet)
        greenlet.link(self.rpcs.discard)
        return None  # the RPC's greenlet answers
