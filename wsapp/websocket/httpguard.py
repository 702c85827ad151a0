"""What the server checks of every HTTP request before any app code runs, sans-I/O.

The handler (wsapp.websocket.handler) asks these questions of each connection and request,
plain HTTP and WebSocket upgrades alike, so that no route can forget them:

- Host allowlist (`allowed_hosts`): a web page can make a browser send requests to a server
  on the developer's own machine by DNS rebinding (the attacker's name resolves to 127.0.0.1;
  the Host header still carries the attacker's name). A server that answers only the names
  it is known by is out of reach: 421 Misdirected Request for any other.
- Credentials in the query (`?token=`, `?api_key=` ...) never reach the access log.
- Every response carries `X-Content-Type-Options: nosniff`: a JSON answer is never run as a
  script or rendered as a page.

Body size and body-read timeout are I/O and live in the handler; the limits are settings.
"""

from __future__ import annotations

import ipaddress
import re

NOSNIFF = ("X-Content-Type-Options", "nosniff")

# The names this machine answers to on loopback (a browser resolves *.localhost there too).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

# Query parameters whose values are credentials: redacted in every access log line.
SECRET_PARAMS = ("token", "access_token", "api_key", "apikey", "key", "secret", "password",
                 "auth", "jwt", "session")
_SECRET_VALUE = re.compile(
    r"(?i)([?&;](?:" + "|".join(SECRET_PARAMS) + r")=)[^&;#\s\"]*")


def loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_hosts(*bind_hosts: str) -> list[str]:
    """The Host allowlist when none is configured, for a server listening on `bind_hosts`:
    on loopback only, the loopback names and those addresses (the case DNS rebinding
    attacks); otherwise any host ('*'), since the names a public server is reached by are
    the operator's to list (allowed_hosts)."""
    if not bind_hosts or not all(loopback(h) for h in bind_hosts):
        return ["*"]
    bound = [f"[{h.strip('[]')}]" if ":" in h else h.lower() for h in bind_hosts]
    return list(dict.fromkeys([*LOOPBACK_NAMES, *bound]))


def host_name(host: str) -> str:
    """The name in a Host header, lower case, without the port ('[::1]:5000' -> '[::1]')."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str | None, allowed: list[str]) -> bool:
    """Whether a request's Host header names a host this server serves.

    `allowed` entries are names or addresses ('.example.com' also allows its subdomains;
    'localhost' also allows '*.localhost', which browsers resolve to loopback); '*' allows
    any. A request without a Host (HTTP/1.0, not a browser) is allowed: rebinding needs a
    browser, and browsers always send one.
    """
    if not allowed or "*" in allowed or host is None:
        return True
    name = host_name(host).rstrip(".")
    for entry in allowed:
        if name == entry or (entry == "localhost" and name.endswith(".localhost")):
            return True
        if entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
            return True
    return False


def redact_query(text: str) -> str:
    """`text` (a request line or a URL) with the values of credential parameters in its
    query replaced by '***' (for a bare query string: `redact_query("?" + qs)[1:]`)."""
    return _SECRET_VALUE.sub(r"\1***", text) if "=" in text else text
