"""The WebSocket layer's settings, and the machinery every layer's settings share.

`WebSocketOptions` holds what the handler, the connection and the tracker read, and nothing
else: the layers above extend it (`wsapp.realtime.options.RealtimeOptions`, then the server's
`wsapp.config.Settings`), so one class per layer adds its own fields and checks, and a single
object still carries them all. Each field's `help` metadata is its documentation: flags,
WSAPP_* variables and README's table are generated from the classes (`from_mapping`,
`markdown_table`), so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

MIB = 1024 * 1024
PREFIX = "WSAPP_"
# An allowed_hosts entry: '*', a name (a leading '.' also allows its subdomains), an IPv4 or a
# bracketed IPv6 address.
HOST_NAME = re.compile(r"\*|\.?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\]")

T = TypeVar("T", bound="WebSocketOptions")


@dataclass
class WebSocketOptions:
    """Limits and timeouts of the WebSocket layer; `help` metadata documents each field."""

    section: ClassVar[str] = "WebSocket"

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
        default=10.0,
        metadata={"help": "seconds a client has to send a complete HTTP request head; also how "
                          "long an idle keep-alive connection is kept"},
    )
    close_timeout: float = field(
        default=3.0, metadata={"help": "seconds to wait for the peer's close frame"}
    )
    max_connections: int = field(
        default=20000,
        metadata={"help": "connections served at once, WebSocket and plain HTTP; 503 past it"},
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
    max_connections_per_ip: int = field(
        default=0,
        metadata={"help": "connections (WebSocket and HTTP) one client IP may hold; 429 past it; "
                          "0 = no cap"},
    )
    max_backlog: int = field(
        default=1 * MIB,
        metadata={"help": "bytes queued toward one slow reader before it is cut off (1008)"},
    )
    max_body_size: int = field(
        default=1 * MIB,
        metadata={"help": "largest HTTP request body, chunked too, in bytes; 413 before the app "
                          "sees it"},
    )
    body_timeout: float = field(
        default=30.0,
        metadata={"help": "seconds a client has to send a whole HTTP request body; 408 past it"},
    )
    allowed_hosts: str = field(
        default="",
        metadata={"help": "comma-separated Host names served ('*' = any; empty: loopback names "
                          "when listening on loopback, else any); 421 otherwise"},
    )
    send_timeout: float = field(
        default=30.0,
        metadata={"help": "seconds a peer may take no bytes we send (its buffers full) before "
                          "it is cut off, whatever the route is doing; 0 = no limit"},
    )
    turn_bytes: int = field(
        default=1 * MIB,
        metadata={"help": "bytes one connection may read before the others get a turn, even "
                          "while it has more data waiting (fairness)"},
    )
    turn_messages: int = field(
        default=1024,
        metadata={"help": "messages one connection may hand its route before the others get a "
                          "turn, even while it has more waiting (fairness)"},
    )

    def validate(self: T) -> T:
        """Raise ValueError naming the first setting out of range; return self.

        Each layer's subclass checks its own fields after calling this.
        """
        self.check(at_least_one=("max_message_size", "max_fragments", "max_connections",
                                 "max_backlog", "max_body_size", "turn_bytes", "turn_messages"),
                   not_negative=("ping_interval", "ping_timeout", "close_timeout",
                                 "max_connections_per_ip", "send_timeout"),
                   positive=("handshake_timeout", "body_timeout"))
        for name in self.hosts():
            if not HOST_NAME.fullmatch(name):
                raise ValueError(f"allowed_hosts: {name!r} is not a host name or address "
                                 "(no scheme, port or path)")
        if not 1 <= self.deflate_level <= 9:
            raise ValueError(f"deflate_level: must be 1..9, got {self.deflate_level}")
        return self

    def check(self, *, at_least_one: Iterable[str] = (), not_negative: Iterable[str] = (),
              positive: Iterable[str] = ()) -> None:
        """The common range checks, one line naming the field when one fails."""
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in not_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)}")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be greater than 0, got {getattr(self, name)}")

    def origins(self) -> list[str]:
        """The allowlist as a list, normalised (lower case, no trailing slash)."""
        return [o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()]

    def hosts(self) -> list[str]:
        """The Host allowlist as a list of lower-case names (ports are not compared)."""
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]

    def replace(self: T, **changes: Any) -> T:
        """A copy with some fields changed (for tests and embedding)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
        """Defaults overridden by WSAPP_* environment variables, validated."""
        return from_mapping(cls, os.environ if environ is None else environ)


# -- loading from strings ---------------------------------------------------------------------

_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def field_kind(f: dataclasses.Field) -> type:
    """The Python type of a field (annotations are strings under `from __future__`)."""
    return f.type if isinstance(f.type, type) else _KINDS.get(str(f.type), str)


def convert(f: dataclasses.Field, raw: str) -> Any:
    """Turn a flag or env string into the field's type, with a clear error naming the field."""
    kind = field_kind(f)
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


def env_name(name: str, prefix: str = PREFIX) -> str:
    """WSAPP_<FIELD> for a field name."""
    return prefix + name.upper()


def from_mapping(cls: type[T], values: Mapping[str, Any], prefix: str = PREFIX) -> T:
    """An options object of class `cls` from defaults overridden by `values`' PREFIX<FIELD>
    entries (strings are converted; empty ones are ignored), validated.

    Raises ValueError with one line naming the field for a value that cannot be read or is out
    of range.
    """
    chosen = {}
    for f in fields(cls):
        raw = values.get(env_name(f.name, prefix))
        if raw is None or raw == "":
            continue
        if isinstance(raw, str):
            chosen[f.name] = convert(f, raw)
        else:  # already typed (e.g. a Flask app.config entry)
            chosen[f.name] = _typed(f, raw)
    return cls(**chosen).validate()


def _typed(f: dataclasses.Field, value: object) -> object:
    kind = field_kind(f)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{f.name}: expected {kind.__name__}, got {value!r}")


# -- documentation ----------------------------------------------------------------------------

def field_sections(cls: type[WebSocketOptions]) -> list[tuple[str, list[dataclasses.Field]]]:
    """The fields of `cls` grouped by the class that declares them, each in declaration order:
    `cls`'s own first, then the layers it builds on from the bottom up (for wsapp.config's
    Settings: Server, WebSocket, Real-time)."""
    by_name = {f.name: f for f in fields(cls)}
    sections: list[tuple[str, list[dataclasses.Field]]] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not issubclass(klass, WebSocketOptions):
            continue
        own = [by_name[name] for name in vars(klass).get("__annotations__", {})
               if name in by_name and name not in seen]
        seen.update(f.name for f in own)
        if own:
            sections.append((klass.section, own))
    return sections[:1] + sections[:0:-1]


def markdown_table(cls: type[WebSocketOptions]) -> str:
    """A configuration table per section, for README (generated, so it cannot drift)."""
    out: list[str] = []
    for title, group in field_sections(cls):
        if out:
            out.append("")
        out += [f"**{title}**", "", "| flag | environment | default | meaning |",
                "|---|---|---|---|"]
        for f in group:
            default = f.default if f.default != "" else "(empty)"
            out.append(f"| `--{f.name.replace('_', '-')}` | `{env_name(f.name)}` | `{default}` | "
                       f"{f.metadata.get('help', '')} |")
    return "\n".join(out)
