"""A RabbitMQ queue: `amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME` (py-amqp, AMQP 0-9-1).

Every process consumes the queue with manual acknowledgement and a prefetch window (competing
consumers): RabbitMQ hands each message to one of them, and requeues what a consumer had not
acknowledged when its connection dies — the message goes to another consumer, flagged
`redelivered`. A message is acknowledged only once the store committed it (basic.ack with
`multiple` up to the last of the batch), so a crash in between redelivers it, and its `key`
(or its AMQP `message_id` property, when it has no key) makes the repeat a no-op.

The body is the JSON feed message (feeds/message.py); publish it persistent to the queue,
e.g. `basic_publish(Message(body, delivery_mode=2, message_id=...), routing_key=QUEUE)`.

Options: `queue` (required), `prefetch` (default: the batch size), `dead` (the dead-letter
queue, default `<queue>.dead`), `heartbeat` (seconds, default 30). A queue that does not exist
is declared durable; one that exists is used as it is (a quorum queue, its own arguments).
A dead letter is the original body, published persistent to the dead-letter queue with the
original properties and headers `x-wsapp-reason` and `x-wsapp-queue`, with publisher
confirms, before the original is acknowledged.

py-amqp speaks plain sockets, so under gevent's monkey-patching every wait is cooperative;
heartbeats are sent from the feed's own loop (each fetch), so no thread is involved.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import amqp

from wsapp.realtime.feeds.base import (
    COMMON_OPTIONS,
    Delivery,
    FeedUnavailable,
    common_options,
    describe,
)
from wsapp.realtime.urls import redact, take_options

OPTIONS = ("queue", "prefetch", "dead", "heartbeat", *COMMON_OPTIONS)
# What a lost, refused or closed connection or channel raises.
UNREACHABLE = (OSError, amqp.exceptions.AMQPError)


class AmqpFeed:
    """The Feed of base.py on a RabbitMQ queue."""

    kind = "amqp"

    def __init__(self, url: str) -> None:
        clean, options = self.parse(url)
        self.batch, self.timeout = common_options(redact(url), options)
        parts = urlsplit(clean)
        self.host = f"{parts.hostname or 'localhost'}:{parts.port or 5672}"
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.queue = options["queue"]
        self.prefetch = int(options.get("prefetch") or self.batch)
        self.heartbeat = int(options.get("heartbeat") or 30)
        self.dead_letters = options.get("dead") or f"{self.queue}.dead"
        self.name = f"amqp:{self.queue}"
        self.where = redact(url)
        self._conn: amqp.Connection | None = None
        self._channel: Any = None
        self._buffer: deque[amqp.Message] = deque()

    @staticmethod
    def parse(url: str) -> tuple[str, dict[str, str]]:
        """(the URL without our options, our options); ValueError naming what is wrong."""
        clean, options = take_options(url, OPTIONS)
        if not options.get("queue"):
            raise ValueError(f"feed {redact(url)}: needs ?queue=NAME")
        for name in ("prefetch", "heartbeat"):
            value = options.get(name)
            if value is not None and not (value.isdigit() and 0 <= int(value) <= 65535):
                raise ValueError(f"feed {redact(url)}: {name} must be a whole number 0..65535")
        common_options(redact(url), options)
        return clean, options

    def connect(self) -> None:
        """Connect, declare the queues when missing, and start consuming."""
        try:
            conn = self._conn = amqp.Connection(
                self.host, userid=self.user, password=self.password, virtual_host=self.vhost,
                connect_timeout=self.timeout, heartbeat=self.heartbeat, confirm_publish=True,
                client_properties={"connection_name": f"wsapp-feed-{os.getpid()}"})
            conn.connect()
            for queue in (self.queue, self.dead_letters):
                self._declare(conn, queue)
            channel = self._channel = conn.channel()
            channel.basic_qos(0, self.prefetch, False)
            self._buffer.clear()
            channel.basic_consume(self.queue, callback=self._buffer.append, no_ack=False)
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None

    @staticmethod
    def _declare(conn: amqp.Connection, queue: str) -> None:
        """Use the queue as it is; declare it durable only when it does not exist."""
        probe = conn.channel()
        try:
            probe.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:  # the server closed the probe channel
            created = conn.channel()
            created.queue_declare(queue, durable=True, auto_delete=False)
            created.close()
        else:
            probe.close()

    def fetch(self, limit: int, wait: float) -> list[Delivery]:
        """What the server has pushed us (prefetch), waiting up to `wait` for the first."""
        conn = self._connected()
        try:
            conn.heartbeat_tick()
            if not self._buffer:
                try:
                    conn.drain_events(timeout=wait)
                except TimeoutError:
                    return []
            while len(self._buffer) < limit:  # whatever else has already arrived
                try:
                    conn.drain_events(timeout=0)
                except TimeoutError:
                    break
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None
        out: list[Delivery] = []
        while self._buffer and len(out) < limit:
            message = self._buffer.popleft()
            ident = message.properties.get("message_id")
            out.append(Delivery(message.body, message, ident=ident,
                                redelivered=bool(message.delivery_info.get("redelivered"))))
        return out

    def settle(self, done: Sequence[Delivery], dead: Sequence[tuple[Delivery, str]]) -> None:
        """Publish the dead letters (confirmed), then acknowledge the whole batch at once."""
        channel = self._connected() and self._channel
        try:
            for delivery, reason in dead:
                original: amqp.Message = delivery.tag
                properties = dict(original.properties)
                headers = dict(properties.pop("application_headers", None) or {})
                headers.update({"x-wsapp-reason": reason, "x-wsapp-queue": self.queue})
                properties["delivery_mode"] = 2
                channel.basic_publish(amqp.Message(original.body, application_headers=headers,
                                                   **properties),
                                      exchange="", routing_key=self.dead_letters)
            tags = [d.tag.delivery_tag for d in done] + [d.tag.delivery_tag for d, _ in dead]
            if tags:
                channel.basic_ack(max(tags), multiple=True)
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None

    def lag(self) -> int | None:
        """Messages ready in the queue (not yet handed to any consumer)."""
        channel = self._connected() and self._channel
        try:
            return int(channel.queue_declare(self.queue, passive=True).message_count)
        except UNREACHABLE as exc:
            raise FeedUnavailable(describe(exc)) from None

    def _connected(self) -> amqp.Connection:
        if self._conn is None or self._channel is None:
            raise FeedUnavailable("not connected")
        return self._conn

    def close(self) -> None:
        """Drop the connection: RabbitMQ requeues what we had not acknowledged."""
        conn, self._conn, self._channel = self._conn, None, None
        self._buffer.clear()
        if conn is not None:
            try:
                conn.collect()  # close the socket without a handshake that could hang
            except Exception:  # a dead connection may fail to close in many ways
                pass


if TYPE_CHECKING:  # mypy proves each source implements the contract (feeds/base.py)
    from wsapp.realtime.feeds.base import Feed

    _AMQPFEED: type[Feed] = AmqpFeed
