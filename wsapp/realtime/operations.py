"""Server-side operations on connections, carried out on every process.

`subscribe(user, channel)`, `unsubscribe(user, channel)`, `close_channel(channel)` and
`disconnect(user, code, reason)` travel through the broker (`Broker.control`), so each reaches
the user's connections wherever they are; each process then does its share here, in a
greenlet of its own (the broker may call from its bus reader, which must never wait on a
store read). Clients are told, with frames the JS client turns into events:

    {"op": "subscribed", "channel", "offset", "server": true}     a subscription was added
    {"op": "unsubscribed", "channel", "reason"}                    one was removed / closed
    close frame (code, reason)                                     disconnected

A mixin of the Hub (hub.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import gevent

from wsapp.realtime.client import Client
from wsapp.realtime.engines.base import Broker
from wsapp.realtime.messages import dumps
from wsapp.websocket.exceptions import WebSocketError

log = logging.getLogger(__name__)

CLOSE_DISCONNECT = 4000  # the default code of a server-side disconnect


class Operations:
    """Server-side subscribe, unsubscribe, close_channel and disconnect, for the Hub."""

    # What the hub provides.
    users: dict[str, set[Client]]
    channels: dict[str, set[Client]]

    @property
    def broker(self) -> Broker:
        raise NotImplementedError

    def subscribe_replay(self, client: Client, channel: str, since: int | None) -> dict[str, Any]:
        raise NotImplementedError

    def unsubscribe(self, client: Client, channel: str) -> bool:
        raise NotImplementedError

    def disconnect(self, client: Client) -> None:
        raise NotImplementedError

    # -- asking every process ----------------------------------------------------------

    def request_subscribe(self, user: str, channel: str) -> None:
        """Subscribe every connection of `user`, on every process, to `channel`."""
        self.broker.control(dumps({"op": "subscribe", "user": user, "channel": channel}))

    def request_unsubscribe(self, user: str, channel: str, reason: str = "") -> None:
        """Unsubscribe every connection of `user`, on every process, from `channel`."""
        self.broker.control(dumps({"op": "unsubscribe", "user": user, "channel": channel,
                                   "reason": reason or "unsubscribed by the server"}))

    def request_close_channel(self, channel: str, reason: str = "") -> None:
        """Unsubscribe everybody, on every process, from `channel`."""
        self.broker.control(dumps({"op": "close_channel", "channel": channel,
                                   "reason": reason or "channel closed"}))

    def request_disconnect(self, user: str, code: int = CLOSE_DISCONNECT,
                           reason: str = "") -> None:
        """Close every connection of `user`, on every process, with `code` and `reason`."""
        self.broker.control(dumps({"op": "disconnect", "user": user, "code": code,
                                   "reason": reason}))

    # -- doing this process's share ----------------------------------------------------

    def control(self, payload: str) -> None:
        """An operation from the broker (this process's or another's): do it here."""
        try:
            op = json.loads(payload)
            run = _OPERATIONS[op["op"]]
        except (ValueError, KeyError, TypeError):
            log.warning("unknown control operation %.200r", payload)
            return
        gevent.spawn(self._run_operation, run, op)

    def _run_operation(self, run: Any, op: dict[str, Any]) -> None:
        try:
            run(self, op)
        except Exception:
            log.exception("control operation %s failed", op.get("op"))

    def _op_subscribe(self, op: dict[str, Any]) -> None:
        channel = op["channel"]
        for client in tuple(self.users.get(op["user"], ())):
            if channel not in client.channels and not client.ws.closed:
                result = self.subscribe_replay(client, channel, None)
                _tell(client, {"op": "subscribed", "channel": channel,
                               "offset": result["offset"], "server": True})

    def _op_unsubscribe(self, op: dict[str, Any]) -> None:
        for client in tuple(self.users.get(op["user"], ())):
            self._drop(client, op["channel"], op["reason"])

    def _op_close_channel(self, op: dict[str, Any]) -> None:
        for client in tuple(self.channels.get(op["channel"], ())):
            self._drop(client, op["channel"], op["reason"])

    def _drop(self, client: Client, channel: str, reason: str) -> None:
        if self.unsubscribe(client, channel):
            _tell(client, {"op": "unsubscribed", "channel": channel, "reason": reason})

    def _op_disconnect(self, op: dict[str, Any]) -> None:
        for client in tuple(self.users.get(op["user"], ())):
            self.disconnect(client)
            gevent.spawn(client.ws.close, int(op["code"]), str(op["reason"]))


def _tell(client: Client, event: dict[str, Any]) -> None:
    """Send an event frame, unless the connection closed meanwhile (nobody to tell)."""
    try:
        client.ws.send(dumps(event))
    except WebSocketError:
        pass


_OPERATIONS = {"subscribe": Operations._op_subscribe, "unsubscribe": Operations._op_unsubscribe,
               "close_channel": Operations._op_close_channel,
               "disconnect": Operations._op_disconnect}
