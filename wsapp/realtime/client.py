"""One /ws connection as the real-time layer sees it: its socket, user, id and channels."""

from __future__ import annotations

from wsapp.websocket.connection import WebSocket


class Client:
    """One /ws connection as the hub sees it."""

    __slots__ = ("ws", "user", "id", "channels", "replaying", "positions", "__weakref__")

    def __init__(self, ws: WebSocket, user: str | None, client_id: str) -> None:
        self.ws = ws
        self.user = user
        self.id = client_id
        self.channels: set[str] = set()
        self.replaying: dict[str, list[str]] = {}  # channel -> live texts held during replay
        # channel -> an offset this connection has every message up to: its own `since`, or
        # what a replay sent it. A process catching up after an outage skips those (recovery).
        # Made on the first `since`: most connections never need one.
        self.positions: dict[str, int] | None = None

    def position(self, channel: str) -> int:
        """The offset up to which this connection has `channel`'s messages (0: unknown)."""
        return self.positions.get(channel, 0) if self.positions else 0

    def has_up_to(self, channel: str, offset: int) -> None:
        """Record that this connection has every message of `channel` up to `offset`."""
        if self.positions is None:
            self.positions = {}
        if offset > self.positions.get(channel, 0):
            self.positions[channel] = offset
