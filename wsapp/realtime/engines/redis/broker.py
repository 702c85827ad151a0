"""The Redis broker: fan-out to every process over the bus (backend.py), for engines/base.py.

A numbered message is already on the bus: the Redis store PUBLISHes it in the script that
numbers it, so this broker only publishes what that store did not — messages with offset
null (live feeds published with persist=False, or written while Redis was down) and messages
numbered by another store. Server-side operations travel as `c<payload>` events, in order
with messages.

While Redis is down, publishes reach this process's subscribers only, and so do operations.
When the bus is back after an outage, the handler hears `resumed()`: messages published
meanwhile by other processes never reached this one, and it must catch its subscribers up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsapp.realtime.engines.base import BrokerHandler, Health
from wsapp.realtime.engines.redis.backend import UNREACHABLE, backend_for, message_payload
from wsapp.realtime.messages import envelope_offset

CONTROL = "c"  # the bus letter of server-side operations


class RedisBroker:
    """Fan-out across processes over the Redis bus."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = backend_for(url)
        self._handler: BrokerHandler | None = None
        self._was_up = False  # the bus has been read before: the next "up" is a resumption

    def start(self, handler: BrokerHandler) -> None:
        """Deliver the bus to `handler` (this process's hub) and subscribe to it."""
        if self._handler is None:
            self._handler = handler
            self.backend.on_message.append(handler.deliver)
            self.backend.on_event[CONTROL] = handler.control
            self.backend.on_up.append(self._on_up)
        self.backend.start_bus()

    def _on_up(self) -> None:
        if self._was_up and self._handler is not None:
            self._handler.resumed()
        self._was_up = True

    def publish(self, channel: str, text: str) -> None:
        """Make every process deliver a message (called once the store numbered it, if at all).

        A Redis store on the same backend already published a numbered message to the bus, in
        the script that numbered it. A message with offset null was not stored (a live feed,
        or Redis is down): it goes on the bus from here, or to this process's subscribers
        only while Redis is down. Messages numbered by another store are published here.
        """
        if self.backend.stores_publish and envelope_offset(channel, text) is not None:
            return
        if not self._send(message_payload(channel, text)) and self._handler is not None:
            self._handler.deliver(channel, text)

    def control(self, payload: str) -> None:
        """Hand `payload` to every process's handler (only this one's while Redis is down)."""
        if not self._send(CONTROL + payload) and self._handler is not None:
            self._handler.control(payload)

    def _send(self, payload: str) -> bool:
        """PUBLISH on the bus; False when it cannot be (Redis down, or the bus not read)."""
        if self.backend.up and self.backend.bus_started:
            try:
                self.backend.client.publish(self.backend.bus, payload)
                return True
            except UNREACHABLE as exc:
                self.backend.mark_down(exc)
        return False

    def health(self) -> Health:
        """Up or down as this process last found Redis."""
        return self.backend.health()

    def close(self) -> None:
        """Stop reading the bus and release the connections."""
        handler = self._handler
        if handler is not None:
            if handler.deliver in self.backend.on_message:
                self.backend.on_message.remove(handler.deliver)
            self.backend.on_event.pop(CONTROL, None)
            if self._on_up in self.backend.on_up:
                self.backend.on_up.remove(self._on_up)
        self.backend.close()


if TYPE_CHECKING:  # mypy proves each engine implements its contract (engines/base.py)
    from wsapp.realtime.engines.base import Broker

    _REDISBROKER: type[Broker] = RedisBroker
