"""Per-user push quotas. (The per-connection rate limits are the WebSocket layer's, applied
from frame headers: wsapp.websocket.fairness.)"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["applicable_quotas", "parse_quotas", "window_name"]


_WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def parse_quotas(spec: str) -> dict[str, tuple[int, float]]:
    """'promo=3/day,total=20/day' → {'promo': (3, 86400), 'total': (20, 86400)}.

    `total` caps every push to a user; any other name caps pushes of that category. Windows
    are rolling (the last N seconds), so a burst at midnight cannot double a daily cap.
    """
    quotas: dict[str, tuple[int, float]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, rule = part.partition("=")
        count, slash, window = rule.partition("/")
        name, window = name.strip(), window.strip().lower().rstrip("s")
        if not eq or not slash or not name or window not in _WINDOWS:
            raise ValueError(f"bad quota {part!r}: use NAME=COUNT/day (or /hour, /minute, "
                             "/week)")
        try:
            limit = int(count)
        except ValueError:
            raise ValueError(f"bad quota {part!r}: COUNT must be a whole number") from None
        if limit < 0:
            raise ValueError(f"bad quota {part!r}: COUNT must be >= 0")
        quotas[name] = (limit, float(_WINDOWS[window]))
    return quotas


def window_name(seconds: float) -> str:
    """'day' for 86400: how a quota window reads in a suppression reason."""
    for name, length in _WINDOWS.items():
        if length == int(seconds):
            return name
    return f"{int(seconds)}s"


def applicable_quotas(quotas: Mapping[str, tuple[int, float]], user: str,
                      category: str | None) -> list[tuple[str, int, float, str]]:
    """The caps that count a push of `category` to `user`, each (name, limit, window seconds,
    the reason a suppression gives): `total`, and the one named after the category."""
    return [(name, limit, window,
             f"quota {name}={limit}/{window_name(window)} reached for user {user}")
            for name, (limit, window) in quotas.items() if name in ("total", category)]
