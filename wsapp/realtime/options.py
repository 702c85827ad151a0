"""The real-time layer's settings: the WebSocket layer's, plus channels, history, tokens and
engines. The server's `wsapp.config.Settings` extends this class with how it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from wsapp.websocket.options import MIB, WebSocketOptions

T = TypeVar("T", bound="RealtimeOptions")


@dataclass
class RealtimeOptions(WebSocketOptions):
    """Limits, credentials and storage of the real-time layer (`help` documents each field)."""

    section = "Real-time"

    rate_messages: float = field(
        default=100.0, metadata={"help": "messages/s a /ws connection may send (burst 2x)"}
    )
    rate_bytes: float = field(
        default=1 * MIB, metadata={"help": "bytes/s a /ws connection may send (burst 2x)"}
    )
    max_subscriptions: int = field(
        default=100, metadata={"help": "channels one /ws connection may subscribe to"}
    )
    max_publish_size: int = field(
        default=64 * 1024, metadata={"help": "largest publish `data`, in bytes of JSON"}
    )
    api_key: str = field(
        default="", metadata={"help": "key for the HTTP API and token minting; empty = demo mode"}
    )
    secret: str = field(
        default="",
        metadata={"help": "token signing secret; empty = generated once into data_dir"},
    )
    token_ttl: float = field(
        default=86400.0, metadata={"help": "seconds a minted token stays valid"}
    )
    data_dir: str = field(
        default="data", metadata={"help": "directory for the token secret and the SQLite store"}
    )
    store: str = field(
        default="",
        metadata={"help": "sqlite:///relative.db, sqlite:////abs/path.db or redis://host:port/db; "
                          "empty = sqlite in data_dir"},
    )
    broker: str = field(
        default="memory", metadata={"help": "memory (one process) or redis://host:port/db"}
    )
    history_size: int = field(
        default=1000, metadata={"help": "messages kept per channel for recovery"}
    )
    history_ttl: float = field(
        default=86400.0, metadata={"help": "seconds a channel message is kept for recovery"}
    )
    push_ttl: float = field(
        default=7 * 86400.0,
        metadata={"help": "seconds a personal message waits for its ack unless the push sets ttl"},
    )
    quota: str = field(
        default="",
        metadata={"help": "per-user push caps, e.g. 'promo=3/day,total=20/day' (repeatable)",
                  "repeat": True},
    )

    feed: str = field(
        default="",
        metadata={"help": "a queue to take pushes and publishes from (repeatable; env: "
                          "comma-separated): redis://H:P/DB?stream=S&group=G, "
                          "amqp://U:P@H:P/VHOST?queue=Q or postgresql://U@H/DB?table=T "
                          "(docs/feeds.md)", "repeat": True},
    )
    key_ttl: float = field(
        default=86400.0,
        metadata={"help": "seconds a push's or publish's idempotency `key` is remembered: a "
                          "repeat within it is a no-op (feeds and the HTTP API)"},
    )

    def validate(self: T) -> T:
        """Raise ValueError naming the first setting out of range; return self."""
        super().validate()
        self.check(at_least_one=("max_subscriptions", "max_publish_size", "history_size"),
                   not_negative=("rate_messages", "rate_bytes"),
                   positive=("token_ttl", "history_ttl", "push_ttl", "key_ttl"))
        if self.feed:
            from wsapp.realtime.feeds import check_feed_url, feed_urls

            for url in feed_urls(self.feed):
                check_feed_url(url)  # a bad URL or a missing client library: one line
        return self

    def store_url(self) -> str:
        """The store URL, defaulting to a SQLite file in data_dir."""
        return self.store or f"sqlite:///{self.data_dir}/wsapp.db"
