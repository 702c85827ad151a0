"""One /ws connection as the real-time layer sees it: its socket, user, id and channels."""

from __future__ import annotations

from collections import deque

from wsapp.websocket.connection import WebSocket


class Hold(deque[str]):
    """Live messages held for one connection while history replays to it, with their size:
    the hub cuts the connection off rather than let it pass max_replay_hold bytes."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def add(self, text: str, limit: int) -> bool:
        """Hold `text` if the hold stays within `limit` bytes (characters: the same for the
        JSON envelopes held here, close enough otherwise); False, holding nothing, if not."""
        if self.size + len(text) > limit:
            return False
        self.append(text)
        self.size += len(text)
        return True

    def take(self) -> str:
        """The oldest held message, no longer held."""
        text = self.popleft()  # O(1): a hold may be thousands of small messages
        self.size -= len(text)
        return text


class Client:
    """One /ws connection as the hub sees it."""

    __slots__ = ("ws", "user", "id", "channels", "replaying", "positions", "__weakref__")

    def __init__(self, ws: WebSocket, user: str | None, client_id: str) -> None:
        self.ws = ws
        self.user = user
        self.id = client_id
        self.channels: set[str] = set()
        self.replaying: dict[str, Hold] = {}  # channel -> live texts held during replay
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
