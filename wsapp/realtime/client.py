"""One /ws connection as the real-time layer sees it: its socket, user, id and channels."""

from __future__ import annotations

from wsapp.websocket.connection import WebSocket


class Client:
    """One /ws connection as the hub sees it."""

    __slots__ = ("ws", "user", "id", "channels", "replaying", "__weakref__")

    def __init__(self, ws: WebSocket, user: str | None, client_id: str) -> None:
        self.ws = ws
        self.user = user
        self.id = client_id
        self.channels: set[str] = set()
        self.replaying: dict[str, list[str]] = {}  # channel -> live texts held during replay
