"""The app's policy code, as registered on a Realtime: who connects, who may subscribe and
publish (policy.py), what RPCs answer, what runs on connect and disconnect, and how the app's
own exceptions map to error codes. One Hooks per Realtime, shared by every app it serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsapp.realtime.exceptions import Reject
from wsapp.realtime.policy import Policy


class Hooks:
    """The registries the Realtime decorators fill; read by the session and the views."""

    def __init__(self) -> None:
        self.policy = Policy()
        self.authenticate: Callable[[], Any] | None = None
        self.rpc: dict[str, Callable[[str | None, Any], Any]] = {}
        self.connect: list[Callable[[str | None, Any], Any]] = []
        self.disconnect: list[Callable[[str | None, Any], Any]] = []
        self.errors: list[tuple[type[BaseException], Callable[[Any], Any]]] = []

    def map_error(self, exc: Exception) -> Reject | None:
        """What the app's on_error handlers make of an exception raised in a hook or RPC."""
        for kind, handler in self.errors:
            if isinstance(exc, kind):
                mapped = handler(exc)
                if isinstance(mapped, Reject):
                    return mapped
                if mapped is not None:
                    code, reason = mapped
                    return Reject(code, reason)
        return None
