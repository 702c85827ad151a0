"""Engine and feed URLs: what logs may show of them, and the query options we read off them."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redact(url: str) -> str:
    """The URL without a password, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url  # as written: urlunsplit would drop sqlite:////abs's empty host
    host = parts.netloc.rpartition("@")[2]  # as written: its port may be no number
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def take_options(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """(the URL without the query options `names`, those options): the rest of the query is
    left for the client library (sslmode=..., a Redis URL's own options)."""
    parts = urlsplit(url)
    taken: dict[str, str] = {}
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in names:
            taken[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), taken
