"""`server.clients`: gevent-websocket's registry of connected clients, as a view of the tracker.

gevent-websocket's handler keeps `server.clients`, a dict of client address ->
Client(address, ws), adding an entry as each WebSocket route starts and deleting it as the
route returns; apps broadcast through it (`for client in server.clients.values():
client.ws.send(...)`) and find their own entry as `handler.active_client`. wsapp's tracker
already holds every open connection, so `clients` is a view of it rather than a second
registry: a connection costs it nothing, the Client object of a connection is made only when
an app first asks for it (then kept by its handler, so attributes apps set on it stay), and a
lookup by address is O(1) through the tracker's index.

Iterating takes a snapshot, so a broadcast loop whose sends let clients come and go meanwhile
neither fails ("dictionary changed size during iteration", as 0.10.1's dict can) nor skips
anyone still there. Entries another handler puts in (gevent-websocket's own, under wsapp's
WebSocketServer) are kept beside the view, so either handler works with either server.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from typing import Any

from geventwebsocket.handler import Client

from wsapp.websocket.tracker import ConnectionTracker

__all__ = ["Client", "ClientMap"]


class ClientMap(MutableMapping):
    """The clients of `server` (whose `tracker`, once it has one, holds its connections)."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._foreign: dict[Any, Client] = {}  # put in by a handler other than wsapp's

    def _tracker(self) -> ConnectionTracker | None:
        return getattr(self._server, "tracker", None)

    def _tracked(self) -> list[Any]:
        """The handlers of the tracked connections, now."""
        tracker = self._tracker()
        if tracker is None:
            return []
        return [ws.handler for ws in tuple(tracker.connections) if ws.handler is not None]

    def __getitem__(self, address: Any) -> Client:
        client = self._foreign.get(address)
        if client is not None:
            return client
        tracker = self._tracker()
        ws = tracker.find(address) if tracker is not None else None
        if ws is None or ws.handler is None:
            raise KeyError(address)
        return ws.handler.connected_client()

    def __contains__(self, address: object) -> bool:
        if address in self._foreign:
            return True
        tracker = self._tracker()
        return tracker is not None and tracker.find(address) is not None

    def __iter__(self) -> Iterator[Any]:
        return iter([*self._foreign, *(h.client_address for h in self._tracked())])

    def __len__(self) -> int:
        tracker = self._tracker()
        return len(self._foreign) + (len(tracker) if tracker is not None else 0)

    def __setitem__(self, address: Any, client: Client) -> None:
        self._foreign[address] = client

    def __delitem__(self, address: Any) -> None:
        """Only entries put in by assignment can be deleted: a connection of wsapp's handler
        leaves when its route returns."""
        del self._foreign[address]

    def items(self) -> ItemsView[Any, Client]:
        return _Items(self)

    def values(self) -> ValuesView[Client]:
        return _Values(self)

    def snapshot(self) -> list[tuple[Any, Client]]:
        """(address, Client) of every client now."""
        return [*self._foreign.items(),
                *((h.client_address, h.connected_client()) for h in self._tracked())]

    def __repr__(self) -> str:
        return f"<ClientMap of {len(self)} clients>"


class _Items(ItemsView):
    def __init__(self, clients: ClientMap) -> None:
        super().__init__(clients)
        self._clients = clients

    def __iter__(self) -> Iterator[tuple[Any, Client]]:
        return iter(self._clients.snapshot())


class _Values(ValuesView):
    def __init__(self, clients: ClientMap) -> None:
        super().__init__(clients)
        self._clients = clients

    def __iter__(self) -> Iterator[Client]:
        return iter([client for _, client in self._clients.snapshot()])
