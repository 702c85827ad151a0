"""Who is connected: connections, users, channels, presence; and fan-out to them.

Theory of operation: every /ws connection is a `Client` in `clients`, in `users[user]` when
authenticated, and in `channels[name]` for each subscription; `members[channel][user]`
counts a user's connections in a channel, so presence lists each user once and join/leave
fire on a user's first and last connection. Fan-out serialises the envelope and builds the
frame once, then hands the same bytes to every recipient with `queue_frame`, which never
blocks: a reader whose backlog passes `max_backlog` is cut off with 1008 and removed at once,
so one slow client can neither grow memory without bound nor delay the others.

Publishing goes hub → pipeline (store: offset, history) → broker (every process) → each
process's `deliver`. A subscription with `since` is registered in *replay* mode: live
messages for it are held while history is sent, then released with duplicates dropped by
offset, so a reconnecting client sees no gap and no duplicate at the seam.

Below the hub sit three engines (engines/base.py): the Store, the Broker and the Presence.
The hub never asks which ones they are: one process runs the memory broker and local
presence, a cluster the Redis ones, through the same calls. The hub is the broker's and the
presence's handler (deliver, control, resumed, presence_event) and their LocalView of this
process's connections.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gevent

from wsapp.realtime.client import Client
from wsapp.realtime.engines import Engines
from wsapp.realtime.engines.base import SUPPRESSED, Broker, Job, Presence, Replay, Store
from wsapp.realtime.limits import parse_quotas
from wsapp.realtime.messages import dumps, envelope_offset, message_raw
from wsapp.realtime.operations import Operations
from wsapp.realtime.options import RealtimeOptions
from wsapp.realtime.pipeline import Pipeline, now_ms
from wsapp.realtime.recovery import Recovery
from wsapp.websocket.connection import TRAFFIC, WebSocket
from wsapp.websocket.frames import CLOSE_POLICY_VIOLATION, OP_TEXT, build_frame

log = logging.getLogger(__name__)

# The stats() figures that add up across processes, and how long one process reports them.
SUMMED = ("connections", "messages_in", "messages_out", "bytes_in", "bytes_out",
          "slow_consumer_drops")
STATS_LEASE = 3.0


class Hub(Recovery, Operations):
    """Registry and fan-out for one process."""

    def __init__(self, settings: RealtimeOptions, store: Store | None = None,
                 broker: Broker | None = None, presence: Presence | None = None) -> None:
        self.settings = settings
        self.quotas = parse_quotas(settings.quota)
        self.engines = Engines(settings, store=store, broker=broker, presence=presence)
        self._pipeline: Pipeline | None = None
        self._presence: Presence | None = None
        self._replays = 0  # replays in progress: deliver() checks clients only when > 0
        self._holds: dict[str, list[str]] = {}  # channel -> live texts held while catching up
        self._delivered: dict[str, int] = {}  # channel -> last offset delivered here
        self.clients: dict[str, Client] = {}
        self.users: dict[str, set[Client]] = {}
        self.channels: dict[str, set[Client]] = {}
        self.members: dict[str, dict[str, int]] = {}
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self.on_fanout: Callable[[float], None] | None = None  # metrics hook (seconds)
        # The app's channel options: whether subscribers hear joins and leaves, and what
        # history a channel keeps, (messages, seconds), when not the settings' own.
        self.join_leave: Callable[[str], bool] = lambda channel: True
        self.history_of: Callable[[str], tuple[int, float] | None] = lambda channel: None

    # -- engines (each started on first use: an app that never publishes opens nothing) ---

    @property
    def store(self) -> Store:
        """Where history and personal messages are kept."""
        return self.engines.store

    @property
    def pipeline(self) -> Pipeline:
        """The single writer in front of the store and broker (starts the broker)."""
        if self._pipeline is None:
            store, broker = self.store, self.engines.broker
            broker.start(self)  # may wait (Redis subscribes): others may get here meanwhile
            if self._pipeline is None:  # one writer, however many greenlets started at once
                self._pipeline = Pipeline(store, broker)
        return self._pipeline

    @property
    def broker(self) -> Broker:
        """How messages and operations reach every process (started on first use)."""
        return self.pipeline.broker

    @property
    def presence_engine(self) -> Presence:
        """Who is where (started on the first subscription, after the broker)."""
        if self._presence is None:
            self.pipeline  # noqa: B018 -- the broker first: presence events share its bus
            if self._presence is None:  # another greenlet may have finished it meanwhile
                presence = self.engines.presence
                presence.start(self, self)
                self._presence = presence
        return self._presence

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
        presence = self.presence_engine
        client.channels.add(channel)
        self.channels.setdefault(channel, set()).add(client)
        user = client.user
        if user is not None:
            counts = self.members.setdefault(channel, {})
            counts[user] = counts.get(user, 0) + 1
        presence.changed(channel, user, client.id, +1)  # join on a user's first connection
        return True

    def unsubscribe(self, client: Client, channel: str) -> bool:
        """Remove `client` from `channel`; False if it was not there."""
        if channel not in client.channels:
            return False
        client.channels.discard(channel)
        if client.positions:
            client.positions.pop(channel, None)
        subs = self.channels.get(channel)
        if subs is not None:
            subs.discard(client)
            if not subs:
                del self.channels[channel]
                self._delivered.pop(channel, None)
        user = client.user
        if user is not None:
            counts = self.members.get(channel)
            if counts is not None and user in counts:
                counts[user] -= 1
                if counts[user] <= 0:
                    del counts[user]
                    if not counts:
                        del self.members[channel]
        self.presence_engine.changed(channel, user, client.id, -1)  # leave on the last one
        return True

    def presence(self, channel: str) -> dict[str, Any]:
        """Members (user ids, each once), their count, and connections in `channel`, across
        every process the broker reaches."""
        return self.presence_engine.members(channel)

    def presence_event(self, op: str, channel: str, user: str, skip: str) -> None:
        """A join/leave (from this process or another): tell this process's subscribers,
        except the connection `skip` (the joiner)."""
        subs = self.channels.get(channel)
        if subs and self.join_leave(channel):
            text = dumps({"op": op, "channel": channel, "user": user})
            self.fan_out((c for c in subs if c.id != skip), text)

    # -- the LocalView presence engines read ---------------------------------------------

    def local_members(self, channel: str) -> Mapping[str, int]:
        """user -> that user's connections in `channel` on this process."""
        return self.members.get(channel, {})

    def local_connections(self, channel: str) -> int:
        """Connections in `channel` on this process."""
        return len(self.channels.get(channel, ()))

    def local_channels(self) -> Iterable[str]:
        """Channels with a connection on this process."""
        return self.channels.keys()

    def local_online(self, user: str) -> bool:
        """Whether `user` has a connection on this process."""
        return bool(self.users.get(user))

    def local_users(self) -> int:
        """Distinct users on this process."""
        return len(self.users)

    def connection_count(self) -> int:
        """/ws connections on this process."""
        return len(self.clients)

    # -- delivery --------------------------------------------------------------------

    def publish(self, channel: str, data: Any, sender: str | None = None,
                persist: bool = True, key: str | None = None) -> dict:
        """Store the message (id, next offset) and deliver it to every subscriber anywhere.

        `persist=False` is for live feeds nobody replays (a dashboard tick): no store write,
        no history, and the message carries `"offset": null`. `key` is an idempotency key
        (engines/base.py): a repeat within key_ttl stores and delivers nothing and answers
        the first call's msg and offset, with `"duplicate": true`.
        """
        keep = self.history_of(channel)
        if not persist or (keep is not None and keep[0] == 0):  # nothing kept: nothing stored
            msg = self.new_id()
            pipeline = self.pipeline  # makes sure the broker is started
            pipeline.broker.publish(channel, message_raw(channel, None, msg, dumps(data),
                                                         sender, now_ms()))
            return {"msg": msg, "offset": None}
        job = self.publish_job(channel, data, sender, key)
        msg, offset, duplicate = _replayed(job, self.pipeline.submit(job))
        return {"msg": msg, "offset": offset, **({"duplicate": True} if duplicate else {})}

    def publish_job(self, channel: str, data: Any, sender: str | None = None,
                    key: str | None = None) -> Job:
        """The store job of a publish (a feed submits many at once: Pipeline.submit_all),
        with the channel's own history limits when its options set them."""
        keep = self.history_of(channel)
        limits = None if keep is None else (keep[0], int(keep[1] * 1000))
        return ("publish", channel, self.new_id(), sender, now_ms(), dumps(data), key, limits)

    def push(self, user: str, data: Any, category: str | None = None,
             ttl: float | None = None, key: str | None = None) -> dict:
        """A personal message to `user`, kept until acked; quotas may suppress it.

        Returns msg, status ("delivered" when one of the user's connections got it, "stored"
        when the user is offline, "suppressed" by a quota), reason and offset. With a `key`
        seen within key_ttl nothing is stored, delivered or counted against a quota: the
        first call's msg, status and offset come back, with `"duplicate": true`.
        """
        job = self.push_job(user, data, category, ttl, key)
        msg, (status, reason, offset), duplicate = _replayed(job, self.pipeline.submit(job))
        extra = {"duplicate": True} if duplicate else {}
        if status == SUPPRESSED:
            return {"msg": msg, "status": "suppressed", "reason": reason, "offset": None,
                    **extra}
        online = self.presence_engine.is_online(user)  # a tab on any process counts
        return {"msg": msg, "status": "delivered" if online else "stored", "reason": None,
                "offset": offset, **extra}

    def push_job(self, user: str, data: Any, category: str | None = None,
                 ttl: float | None = None, key: str | None = None) -> Job:
        """The store job of a push (ttl defaults to push_ttl; this process's quotas)."""
        ts = now_ms()
        ttl = self.settings.push_ttl if ttl is None else ttl
        return ("push", user, self.new_id(), ts, dumps(data), category, ts + int(ttl * 1000),
                self.quotas, key)

    def ack(self, user: str, msg: str) -> str | None:
        """Record `user`'s ack of `msg`; the status after, or None if it is not theirs."""
        return self.store.ack(user, msg, now_ms())

    def deliver(self, channel: str, text: str) -> None:
        """Hand a published message to this process's subscribers (the broker calls this).

        A numbered message that skips offsets tells that this process missed some (its bus
        was down a while): the channel is caught up first (recovery.py).
        """
        if channel not in self.channels:
            return
        held = self._holds.get(channel)
        if held is not None:  # the channel is being caught up: in line behind what it missed
            held.append(text)
            return
        offset = envelope_offset(channel, text)
        if offset is not None:
            last = self._delivered.get(channel)
            self._delivered[channel] = offset
            if last is not None and offset > last + 1:
                self._delivered[channel] = last
                self.catch_up(channel, first=text)
                return
        self._dispatch(channel, text)

    def _dispatch(self, channel: str, text: str, again: int | None = None) -> None:
        """Send to the channel's subscribers (those replaying history get it after).

        `again`: the offset of a message a catch-up sends (recovery.py); connections that
        already have it — they resumed with a `since` past it, here or elsewhere — are skipped.
        """
        subs: Iterable[Client] | None = self.channels.get(channel)
        if not subs:
            return
        if again is not None:
            subs = {c for c in subs if c.position(channel) < again}
        if self._replays:
            live = []
            hold_limit = self.settings.max_replay_hold
            for client in subs:
                held = client.replaying.get(channel)
                if held is None:
                    live.append(client)
                elif not held.add(text, hold_limit) and not client.ws.closed:
                    self._cut_slow(client, "slow consumer (replay hold)")
            subs = live
        sent = self.fan_out(subs, text)
        if sent and channel.startswith("user:"):
            # A personal message reached the user's connection(s): record it.
            msg = json.loads(text).get("msg")
            self.pipeline.submit_nowait(("delivered", [msg], now_ms()))

    def resumed(self) -> None:
        """The broker carries messages again after an outage: catch up every channel this
        process serves, from the last offset it delivered (recovery.py)."""
        channels = [c for c in self.channels if c in self._delivered]
        log.info("broker resumed: catching up %d channel(s)", len(channels))
        for channel in channels:
            self.catch_up(channel)

    def last_offset(self, channel: str) -> int:
        """The offset of the channel's latest message (0 when it has none)."""
        return self.store.last_offset(channel)

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

    def _cut_slow(self, client: Client, why: str = "slow consumer") -> None:
        """Close a client that does not keep up with 1008 (it reconnects with `since`)."""
        TRAFFIC.slow_consumer_drops += 1
        log.warning("%s %s (user %s): %d bytes queued, closing with 1008", why,
                    client.ws.peer, client.user, client.ws.backlog)
        self.disconnect(client)
        gevent.spawn(client.ws.terminate, CLOSE_POLICY_VIOLATION, why)

    # -- figures ---------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """This process's figures (users: online anywhere) for the dashboard and /metrics."""
        return {
            "connections": len(self.clients),
            "users": self.presence_engine.online_users(),
            "channels": len(self.channels),
            "messages_in": TRAFFIC.messages_in,
            "messages_out": TRAFFIC.messages_out,
            "bytes_in": TRAFFIC.bytes_in,
            "bytes_out": TRAFFIC.bytes_out,
            "slow_consumer_drops": TRAFFIC.slow_consumer_drops,
        }

    def cluster_stats(self, lease: float = STATS_LEASE) -> dict[str, int] | None:
        """stats() of every process summed, if this process is the one elected to report
        them for `lease` seconds; None when another process reports (one process alone
        always does)."""
        local = self.stats()
        presence = self.presence_engine
        shares = presence.gather("stats", {k: local[k] for k in SUMMED}, lease)
        if shares is None:
            return None
        figures = {k: sum(int(share.get(k, 0)) for share in shares) for k in SUMMED}
        figures["users"] = local["users"]  # already counted everywhere
        figures["channels"] = presence.channel_count()
        return figures


def _replayed(job: Job, value: Any) -> tuple[str, Any, bool]:
    """(msg, result, duplicate) of a publish or push job: a Replay's are the first run's."""
    if isinstance(value, Replay):
        return value.msg, value.result, True
    return job[2], value, False
