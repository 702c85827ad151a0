"""Who is connected: connections, users, channels, presence; and fan-out to them.

Theory of operation: every /ws connection is a `Client` in `clients`, in `users[user]` when
authenticated, and in `channels[name]` for each subscription; `members[channel][user]`
counts a user's connections in a channel, so presence lists each user once and join/leave
fire on a user's first and last connection. Fan-out serialises the envelope and builds the
frame once, then hands the same bytes to every recipient with `queue_frame`, which never
blocks: a reader whose backlog passes `max_backlog` is cut off with 1008 and removed at once,
so one slow client can neither grow memory without bound nor delay the others.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent

from wsapp.config import Settings
from wsapp.connection import TRAFFIC, WebSocket
from wsapp.frames import CLOSE_POLICY_VIOLATION, OP_TEXT, build_frame
from wsapp.messages import dumps, message

log = logging.getLogger("wsapp.hub")


class Client:
    """One /ws connection as the hub sees it."""

    __slots__ = ("ws", "user", "id", "channels", "__weakref__")

    def __init__(self, ws: WebSocket, user: str | None, client_id: str) -> None:
        self.ws = ws
        self.user = user
        self.id = client_id
        self.channels: set[str] = set()


class Hub:
    """Registry and fan-out for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients: dict[str, Client] = {}
        self.users: dict[str, set[Client]] = {}
        self.channels: dict[str, set[Client]] = {}
        self.members: dict[str, dict[str, int]] = {}
        self.offsets: dict[str, int] = {}
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self.on_fanout: Callable[[float], None] | None = None  # metrics hook (seconds)

    # -- identity ------------------------------------------------------------------

    def new_id(self) -> str:
        """A process-unique, cluster-unique-enough id (random prefix + counter)."""
        return f"{self._prefix}{next(self._ids):x}"

    # -- connections ---------------------------------------------------------------

    def connect(self, ws: WebSocket, user: str | None) -> Client:
        """Register a connection (after its handshake and token check)."""
        client = Client(ws, user, self.new_id())
        self.clients[client.id] = client
        if user is not None:
            self.users.setdefault(user, set()).add(client)
        return client

    def disconnect(self, client: Client) -> None:
        """Remove a connection from every map (idempotent); fires leave events."""
        if self.clients.pop(client.id, None) is None:
            return
        for channel in list(client.channels):
            self.unsubscribe(client, channel)
        if client.user is not None:
            tabs = self.users.get(client.user)
            if tabs is not None:
                tabs.discard(client)
                if not tabs:
                    del self.users[client.user]

    # -- channels and presence -----------------------------------------------------

    def subscribe(self, client: Client, channel: str) -> bool:
        """Add `client` to `channel`; False if it was already there."""
        if channel in client.channels:
            return False
        client.channels.add(channel)
        self.channels.setdefault(channel, set()).add(client)
        user = client.user
        if user is not None:
            counts = self.members.setdefault(channel, {})
            counts[user] = counts.get(user, 0) + 1
            if counts[user] == 1:
                self._presence_event("join", channel, user, skip=client)
        return True

    def unsubscribe(self, client: Client, channel: str) -> bool:
        """Remove `client` from `channel`; False if it was not there."""
        if channel not in client.channels:
            return False
        client.channels.discard(channel)
        subs = self.channels.get(channel)
        if subs is not None:
            subs.discard(client)
            if not subs:
                del self.channels[channel]
        user = client.user
        if user is not None:
            counts = self.members.get(channel)
            if counts is not None and user in counts:
                counts[user] -= 1
                if counts[user] <= 0:
                    del counts[user]
                    if not counts:
                        del self.members[channel]
                    self._presence_event("leave", channel, user)
        return True

    def presence(self, channel: str) -> dict:
        """Members (user ids, each once), their count, and connections in `channel`."""
        members = sorted(self.members.get(channel, ()))
        return {"members": members, "count": len(members),
                "connections": len(self.channels.get(channel, ()))}

    def _presence_event(self, op: str, channel: str, user: str,
                        skip: Client | None = None) -> None:
        subs = self.channels.get(channel)
        if subs:
            text = dumps({"op": op, "channel": channel, "user": user})
            self.fan_out((c for c in subs if c is not skip), text)

    # -- delivery --------------------------------------------------------------------

    def publish(self, channel: str, data: Any, sender: str | None = None) -> dict:
        """Give the message an id and the channel's next offset, deliver it to subscribers."""
        offset = self.offsets.get(channel, 0) + 1
        self.offsets[channel] = offset
        msg = self.new_id()
        text = message(channel, offset, msg, data, sender, int(time.time() * 1000))
        subs = self.channels.get(channel)
        if subs:
            self.fan_out(subs, text)
        return {"msg": msg, "offset": offset}

    def last_offset(self, channel: str) -> int:
        """The offset of the channel's latest message (0 when it has none)."""
        return self.offsets.get(channel, 0)

    def send_to_user(self, user: str, text: str) -> int:
        """Send to every connection (tab) of `user`; returns how many."""
        return self.fan_out(self.users.get(user, ()), text)

    def broadcast(self, text: str) -> int:
        """Send to every /ws connection."""
        return self.fan_out(self.clients.values(), text)

    def fan_out(self, recipients: Iterable[Client], text: str) -> int:
        """Send one text message to many: the frame is built once, nobody waits on anyone."""
        started = time.perf_counter()
        frame = build_frame(OP_TEXT, text.encode("utf-8"))
        limit = self.settings.max_backlog
        sent = 0
        for client in tuple(recipients):  # copy: cutting a slow reader edits the sets
            if client.ws.queue_frame(frame, limit):
                sent += 1
            elif not client.ws.closed:
                self._cut_slow(client)
        if self.on_fanout is not None:
            self.on_fanout(time.perf_counter() - started)
        return sent

    def _cut_slow(self, client: Client) -> None:
        TRAFFIC.slow_consumer_drops += 1
        log.warning("slow consumer %s (user %s): %d bytes queued, closing with 1008",
                    client.ws.peer, client.user, client.ws.backlog)
        self.disconnect(client)
        gevent.spawn(client.ws.terminate, CLOSE_POLICY_VIOLATION, "slow consumer")

    # -- figures ---------------------------------------------------------------------

    def stats(self) -> dict:
        """Figures for the dashboard and /metrics."""
        return {
            "connections": len(self.clients),
            "users": len(self.users),
            "channels": len(self.channels),
            "messages_in": TRAFFIC.messages_in,
            "messages_out": TRAFFIC.messages_out,
            "bytes_in": TRAFFIC.bytes_in,
            "bytes_out": TRAFFIC.bytes_out,
            "slow_consumer_drops": TRAFFIC.slow_consumer_drops,
        }


def get_hub(app: Any) -> Hub:
    """The hub of a Flask app (created on first use from the app's Settings)."""
    hub = app.extensions.get("wsapp.hub")
    if hub is None:
        hub = app.extensions["wsapp.hub"] = Hub(app.config["WSAPP"])
    return hub
