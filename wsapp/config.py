"""One Settings object for the whole server, filled from defaults, WSAPP_* env vars and CLI flags.

Every field is a flag (`--max-message-size`) and an environment variable
(`WSAPP_MAX_MESSAGE_SIZE`); the flag wins over the variable, the variable over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

MIB = 1024 * 1024


@dataclass
class Settings:
    """Server configuration; `help` metadata doubles as the CLI and README documentation."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=5000, metadata={"help": "TCP port to listen on"})
    workers: int = field(
        default=1,
        metadata={"help": "processes serving the port (SO_REUSEPORT, supervised); "
                          "> 1 needs --broker redis://..."},
    )
    max_message_size: int = field(
        default=1 * MIB,
        metadata={"help": "largest message accepted, in bytes (after decompression); 1009 past it"},
    )
    max_fragments: int = field(
        default=4096, metadata={"help": "most frames one fragmented message may span; 1009 past it"}
    )
    ping_interval: float = field(
        default=20.0, metadata={"help": "idle seconds before the server pings a peer; 0 = off"}
    )
    ping_timeout: float = field(
        default=20.0, metadata={"help": "seconds a pinged peer has to answer before it is closed"}
    )
    handshake_timeout: float = field(
        default=10.0, metadata={"help": "seconds a client has to send a complete HTTP request"}
    )
    close_timeout: float = field(
        default=3.0, metadata={"help": "seconds to wait for the peer's close frame"}
    )
    backlog: int = field(
        default=2048,
        metadata={"help": "listen backlog: handshakes the kernel queues (capped by somaxconn)"},
    )
    max_connections: int = field(
        default=20000, metadata={"help": "WebSocket connections served at once; 503 past it"}
    )
    allowed_origins: str = field(
        default="",
        metadata={"help": "comma-separated extra allowed Origins ('*' = any); own host always ok"},
    )
    deflate: bool = field(
        default=True, metadata={"help": "negotiate permessage-deflate (RFC 7692)"}
    )
    deflate_level: int = field(
        default=1,
        metadata={"help": "zlib level 1 (fastest) to 9 for what the server sends; 6 compresses "
                          "large JSON ~10% smaller at ~3x the CPU"},
    )
    shutdown_timeout: float = field(
        default=5.0, metadata={"help": "seconds graceful shutdown waits for connections to close"}
    )
    max_connections_per_ip: int = field(
        default=0, metadata={"help": "WebSockets one client IP may hold; 429 past it; 0 = no cap"}
    )
    max_backlog: int = field(
        default=1 * MIB,
        metadata={"help": "bytes queued toward one slow reader before it is cut off (1008)"},
    )
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
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})

    def validate(self) -> Settings:
        """Raise ValueError naming the first setting out of range; return self."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not in 0..65535")
        for name in ("max_message_size", "max_fragments", "max_connections", "max_backlog",
                     "backlog",
                     "max_subscriptions", "max_publish_size", "history_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("ping_interval", "ping_timeout", "close_timeout", "shutdown_timeout",
                     "rate_messages", "rate_bytes", "max_connections_per_ip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)}")
        for name in ("handshake_timeout", "token_ttl", "history_ttl", "push_ttl", "key_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be greater than 0, got {getattr(self, name)}")
        if not 1 <= self.deflate_level <= 9:
            raise ValueError(f"deflate_level: must be 1..9, got {self.deflate_level}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level: {self.log_level!r} is not DEBUG, INFO, WARNING or "
                             "ERROR")
        if self.feed:
            from wsapp.realtime.feeds import check_feed_url, feed_urls

            for url in feed_urls(self.feed):
                check_feed_url(url)  # a bad URL or a missing client library: one line
        return self

    def origins(self) -> list[str]:
        """The allowlist as a list, normalised (lower case, no trailing slash)."""
        return [o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()]

    def store_url(self) -> str:
        """The store URL, defaulting to a SQLite file in data_dir."""
        return self.store or f"sqlite:///{self.data_dir}/wsapp.db"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (for tests and embedding)."""
        return dataclasses.replace(self, **changes)


def _convert(f: dataclasses.Field, raw: str) -> Any:
    """Turn a flag or env string into the field's type, with a clear error naming the field."""
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool}.get(
        str(f.type), str
    )
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ValueError(f"{f.name}: cannot read {raw!r} as {kind.__name__}") from None


def env_name(name: str) -> str:
    """WSAPP_<FIELD> for a field name."""
    return "WSAPP_" + name.upper()


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults overridden by WSAPP_* variables."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is not None and raw != "":
            values[f.name] = _convert(f, raw)
    return Settings(**values).validate()


def build_parser(prog: str = "serve.py") -> argparse.ArgumentParser:
    """An argparse parser with one flag per Settings field."""
    parser = argparse.ArgumentParser(prog=prog, description="wsapp: real-time push for Flask")
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        doc = f"{f.metadata.get('help', '')} (env {env_name(f.name)}, default {f.default!r})"
        if f.metadata.get("repeat"):
            parser.add_argument(flag, dest=f.name, action="append", default=None,
                                metavar=f.name.upper(), help=doc)
        elif f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=doc)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=doc)
    return parser


def from_args(argv: Sequence[str] | None = None,
              environ: Mapping[str, str] | None = None, prog: str = "serve.py") -> Settings:
    """Settings from CLI flags over env vars over defaults; exits with a message on bad input
    (`prog` names the program in it)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        settings = from_env(environ)
        by_name = {f.name: f for f in fields(Settings)}
        for name, raw in vars(args).items():
            if raw is None:
                continue
            if isinstance(raw, list):  # a repeatable flag: join its values
                raw = ",".join(raw)
            value = raw if isinstance(raw, bool) else _convert(by_name[name], raw)
            setattr(settings, name, value)
        settings.validate()
    except ValueError as exc:
        parser.error(str(exc))
    return settings


def markdown_table() -> str:
    """The configuration table for README, generated so the docs cannot drift from the code."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        default = f.default if f.default != "" else "(empty)"
        rows.append(f"| `--{f.name.replace('_', '-')}` | `{env_name(f.name)}` | `{default}` | "
                    f"{f.metadata.get('help', '')} |")
    return "\n".join(rows)
