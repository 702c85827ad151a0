"""The real-time layer's settings: the WebSocket layer's, plus channels, history, tokens and
engines. The server's `wsapp.config.Settings` extends this class with how it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TypeVar

from wsapp.realtime.auth import ALGORITHMS, check_secret
from wsapp.realtime.engines import check_url
from wsapp.realtime.limits import parse_quotas
from wsapp.realtime.policy import parse_channels
from wsapp.websocket.options import MIB, WebSocketOptions

T = TypeVar("T", bound="RealtimeOptions")
# What an API request body may hold beyond a publish's data: the other fields, JSON syntax.
BODY_SLACK = 4096


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
    max_dropped: int = field(
        default=100,
        metadata={"help": "messages over the rate limit dropped within 10 s before the "
                          "connection is closed with 1008; 0 = never closed"},
    )
    max_replay_hold: int = field(
        default=1 * MIB,
        metadata={"help": "bytes of live messages held for one connection while its history "
                          "replays; past it the connection is closed (1008) and resumes with "
                          "since"},
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

    channels: str = field(
        default="",
        metadata={"help": "per-pattern channel options as JSON, e.g. '{\"chat:*\": {\"publish\": "
                          "true, \"history_size\": 100}}' (docs/extension.md)"},
    )
    rpc_concurrency: int = field(
        default=8, metadata={"help": "RPC calls one connection may have running at once"}
    )
    url_prefix: str = field(
        default="",
        metadata={"help": "where /ws, /api, /metrics, /healthz and the JS client are mounted, "
                          "e.g. /rt"},
    )
    jwt_algorithm: str = field(
        default="HS256",
        metadata={"help": "token algorithm: HS256 (with --secret), RS256 or ES256 (with "
                          "--jwt-public-key)"},
    )
    jwt_public_key: str = field(
        default="",
        metadata={"help": "PEM public key (or @/path/to/key.pem) that checks RS256/ES256 tokens"},
    )
    jwt_private_key: str = field(
        default="",
        metadata={"help": "PEM private key (or @path) to mint RS256/ES256 tokens; empty: "
                          "another service mints them"},
    )
    jwt_issuer: str = field(
        default="", metadata={"help": "required `iss` of tokens (and set on minted ones)"}
    )
    jwt_audience: str = field(
        default="", metadata={"help": "required `aud` of tokens (and set on minted ones)"}
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
        self.check(at_least_one=("max_subscriptions", "max_publish_size", "history_size",
                                 "rpc_concurrency", "max_replay_hold"),
                   not_negative=("rate_messages", "rate_bytes", "max_dropped"),
                   positive=("token_ttl", "history_ttl", "push_ttl", "key_ttl"))
        if self.max_body_size < self.max_publish_size + BODY_SLACK:
            raise ValueError(f"max_body_size: {self.max_body_size} bytes cannot carry a publish "
                             f"of max_publish_size ({self.max_publish_size}) plus its other "
                             f"fields; make it at least {self.max_publish_size + BODY_SLACK}")
        try:
            parse_quotas(self.quota)
        except ValueError as exc:
            raise ValueError(f"quota: {exc}") from None
        check_data_dir(self.data_dir)
        parse_channels(self.channels)
        check_url("store", self.store_url())
        check_url("broker", self.broker)
        if self.url_prefix and (not self.url_prefix.startswith("/")
                                or self.url_prefix.endswith("/")):
            raise ValueError(f"url_prefix: {self.url_prefix!r} must start with / and not end "
                             "with one (or be empty)")
        if self.jwt_algorithm not in ALGORITHMS:
            raise ValueError(f"jwt_algorithm: {self.jwt_algorithm!r} is not one of "
                             f"{', '.join(ALGORITHMS)}")
        if self.jwt_algorithm == "HS256" and self.secret:
            check_secret(self.secret.encode("utf-8"))
        if self.jwt_algorithm != "HS256" and not self.jwt_public_key:
            raise ValueError(f"jwt_public_key: {self.jwt_algorithm} needs the public key")
        if self.jwt_algorithm != "HS256" and find_spec("cryptography") is None:
            raise ValueError(f"jwt_algorithm: {self.jwt_algorithm} needs the cryptography "
                             "package (pip install 'wsapp[keys]')")
        if self.feed:
            from wsapp.realtime.feeds import check_feed_url, feed_urls

            for url in feed_urls(self.feed):
                check_feed_url(url)  # a bad URL or a missing client library: one line
        return self

    def store_url(self) -> str:
        """The store URL, defaulting to a SQLite file in data_dir."""
        return self.store or f"sqlite:///{self.data_dir}/wsapp.db"


def check_data_dir(path: str) -> None:
    """ValueError unless `path` is (or can be made) a writable directory: said at start, not
    as a traceback at the first publish."""
    here = Path(path).absolute()
    if here.exists() and not here.is_dir():
        raise ValueError(f"data_dir: {path!r} is not a directory")
    while not here.exists():  # it will be made: its nearest existing parent must allow it
        here = here.parent
    if not here.is_dir() or not os.access(here, os.W_OK | os.X_OK):
        raise ValueError(f"data_dir: {path!r} cannot be written ({here} is not a writable "
                         "directory)")
