"""The opening handshake (RFC 6455 §4.2), sans-I/O: request data in, a 101 or a refusal out.

Theory of operation: the server adapts whatever it parsed (a WSGI environ, here) into a
`Request`: method, HTTP version, path and headers as a mapping of lower-case names. `accept()`
checks it in the order a client is best told about problems — HTTP version, method, the
Connection and Upgrade headers, Sec-WebSocket-Version, Sec-WebSocket-Key, Origin, then the
connection limits (given as plain numbers: the server counts, this module compares) — and
either raises `HandshakeRejected` (status, plain-text reason, extra headers) or returns an
`Accept`: the 101's headers, the permessage-deflate state agreed from the client's offers and
the subprotocol chosen. `response_bytes()` renders either answer; nothing here touches a socket,
so every rule is tested with plain data (tests/websocket/test_handshake.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from wsapp.websocket.deflate import PerMessageDeflate, negotiate
from wsapp.websocket.exceptions import HandshakeRejected
from wsapp.websocket.options import WebSocketOptions

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}
_VERSION_HEADER = [("Sec-WebSocket-Version", "13")]
TRY_LATER = [("Retry-After", "5")]


class Request(NamedTuple):
    """What the handshake looks at; `headers` maps lower-case names to values (a header sent
    several times joined by ',')."""

    method: str
    version: str  # "HTTP/1.1"
    path: str
    headers: Mapping[str, str]
    client: str = ""  # the client's address, only to say which one hit the per-IP cap
    # "https" or "http" when known (TLS here, or a proxy's X-Forwarded-Proto), else None: a
    # plain connection may be a TLS-terminating proxy's, so its pages may be https too.
    scheme: str | None = None


class Accept(NamedTuple):
    """A handshake accepted: the 101's headers and what they agreed."""

    headers: list[tuple[str, str]]
    deflate: PerMessageDeflate | None  # the connection's compression state (params inside)
    protocol: str | None  # the subprotocol chosen, if any
    extensions: str | None  # the Sec-WebSocket-Extensions value answered, if any

    def response_bytes(self) -> bytes:
        """The whole 101 response."""
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return f"HTTP/1.1 101 Switching Protocols\r\n{head}\r\n".encode("latin-1")


def accept(request: Request, options: WebSocketOptions, *, connections: int = 0,
           connections_from_client: int = 0,
           app_protocol: Callable[[str], str | None] | None = None) -> Accept:
    """Check an upgrade request; return what to answer with, or raise HandshakeRejected.

    `connections` is how many WebSockets the server holds now, `connections_from_client` how
    many of them the requesting address holds; `app_protocol(path)` is gevent-websocket's
    hook naming the subprotocol the app speaks (chosen only if the client offered it).
    """
    headers = request.headers
    if request.version != "HTTP/1.1":
        raise HandshakeRejected("400 Bad Request", f"WebSocket needs HTTP/1.1, got "
                                f"{request.version}")
    if request.method != "GET":
        raise HandshakeRejected("400 Bad Request", "a WebSocket handshake must be a GET request")
    if "upgrade" not in [t.strip() for t in headers.get("connection", "").lower().split(",")]:
        raise HandshakeRejected("400 Bad Request", "Connection header lacks the 'upgrade' token")
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeRejected("400 Bad Request", "Upgrade header lacks 'websocket'")
    version = headers.get("sec-websocket-version")
    if not version:
        raise HandshakeRejected("426 Upgrade Required", "Sec-WebSocket-Version header missing",
                                _VERSION_HEADER)
    if version.strip() != "13":
        raise HandshakeRejected("400 Bad Request", f"unsupported WebSocket version {version!r}",
                                _VERSION_HEADER)
    key = headers.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise HandshakeRejected("400 Bad Request",
                                "Sec-WebSocket-Key must be 16 bytes in base64") from None
    origin = headers.get("origin")
    if not origin_allowed(origin, headers.get("host"), options.origins(), request.scheme):
        raise HandshakeRejected("403 Forbidden", f"origin {origin!r} not allowed")
    full = over_cap(options, connections, connections_from_client, request.client)
    if full is not None:
        raise full
    answer = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Accept", accept_key(key))]
    deflate = extensions = None
    offers = headers.get("sec-websocket-extensions")
    if options.deflate and offers:
        agreed = negotiate(offers)
        if agreed is not None:
            params, extensions = agreed
            deflate = PerMessageDeflate(params, level=options.deflate_level)
            answer.append(("Sec-WebSocket-Extensions", extensions))
    protocol = select_protocol(headers.get("sec-websocket-protocol"), request.path, app_protocol)
    if protocol:
        answer.append(("Sec-WebSocket-Protocol", protocol))
    return Accept(answer, deflate, protocol, extensions)


def over_cap(options: WebSocketOptions, connections: int, connections_from_client: int,
             client: str) -> HandshakeRejected | None:
    """The refusal for one more connection when the server holds `connections` and the
    client's address `connections_from_client`: 503 at max_connections, 429 at
    max_connections_per_ip; None while there is room."""
    if connections >= options.max_connections:
        return HandshakeRejected("503 Service Unavailable",
                                 f"server is at its limit of {options.max_connections} "
                                 "connections", TRY_LATER)
    cap = options.max_connections_per_ip
    if cap and connections_from_client >= cap:
        return HandshakeRejected("429 Too Many Requests",
                                 f"{client} already holds {cap} connections", TRY_LATER)
    return None


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def origin_allowed(origin: str | None, host: str | None, allowed: list[str],
                   scheme: str | None = None) -> bool:
    """Whether a browser Origin may connect: its own host, the allowlist, or '*'.

    Schemes count: an allowlist entry with a scheme matches only that scheme (an entry
    without one, any); the own host matches only a page of the connection's `scheme` (http
    pages over ws, https pages over wss) when it is known, so a plain-http page (one an
    attacker on the network can inject) cannot use a wss endpoint's cookies. Non-browser
    clients send no Origin and are allowed: Origin protects browsers' users from other
    sites, it is not authentication.
    """
    if not origin:
        return True
    if "*" in allowed:
        return True
    origin = origin.strip().rstrip("/").lower()
    try:  # ValueError for a port that is no number or out of range, a broken [IPv6
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False  # "null" (a sandboxed frame, a file), an extension's page ...
        port = str(parts.port or _DEFAULT_PORTS[parts.scheme])
    except ValueError:
        return False  # a bad Origin is a foreign one: 403, not a traceback
    for entry in allowed:
        if "://" in entry:
            if _same_origin(entry, parts.scheme, parts.hostname, port):
                return True
        elif _same_host(entry, parts.hostname, port, parts.scheme):
            return True
    if not host or (scheme is not None and parts.scheme != scheme):
        return False
    return _same_host(host.strip().lower(), parts.hostname, port, parts.scheme)


def _same_origin(entry: str, scheme: str, hostname: str, port: str) -> bool:
    """Whether an allowlist entry 'scheme://host[:port]' names this origin."""
    e = urlsplit(entry)
    try:
        return (e.scheme == scheme and e.hostname == hostname
                and str(e.port or _DEFAULT_PORTS.get(e.scheme, "")) == port)
    except ValueError:
        return False


def _same_host(host: str, hostname: str, port: str, scheme: str) -> bool:
    """Whether 'host[:port]' (a Host header or a scheme-less entry) names this origin's host
    and port (a missing port: the default of the origin's scheme)."""
    if host.startswith("["):  # IPv6 literal
        name, _, rest = host[1:].partition("]")
        host_port = rest.lstrip(":")
    else:
        name, _, host_port = host.partition(":")
    return name == hostname and (host_port or _DEFAULT_PORTS[scheme]) == port


def select_protocol(offered: str | None, path: str,
                    app_protocol: Callable[[str], str | None] | None) -> str | None:
    """The subprotocol the app names for `path`, if the client offered it (else None)."""
    if not offered or app_protocol is None:
        return None
    wanted = app_protocol(path)
    return wanted if wanted in [p.strip() for p in offered.split(",")] else None


def response_bytes(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A complete HTTP/1.1 response that closes the connection (a refusal, or a route's
    answer to an upgrade it declined); plain text unless `headers` say otherwise."""
    names = {k.lower() for k, _ in headers}
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    if "content-type" not in names:
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    if "x-content-type-options" not in names:
        headers.append(("X-Content-Type-Options", "nosniff"))
    headers.append(("Content-Length", str(len(body))))
    headers.append(("Connection", "close"))
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def refusal_bytes(rejected: HandshakeRejected) -> bytes:
    """The HTTP response for a refused handshake: its status, headers and reason as body."""
    return response_bytes(rejected.status, rejected.headers,
                          rejected.reason.encode("utf-8") + b"\n")
