"""Who is connected right now: liveness pings, dead-peer cut-off, and close-all at shutdown.

One greenlet per server sweeps every connection a few times per ping interval, instead of a
timer greenlet per connection: at tens of thousands of idle connections that saves a
greenlet stack each. The same set is gevent-websocket's `server.clients` (a view of it:
wsapp.websocket.clients), looked up by client address through an index made on the first
such lookup, so that a server whose apps never look pays nothing for it.

It also counts every open TCP connection, plain HTTP ones included (`enter`/`leave`, by the
handler around each connection): a thousand clients trickling request bodies hold as many
file descriptors as a thousand WebSockets, so both count against `max_connections` and
`max_connections_per_ip`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent

from wsapp.websocket.connection import WebSocket
from wsapp.websocket.exceptions import HandshakeRejected
from wsapp.websocket.frames import CLOSE_INTERNAL_ERROR
from wsapp.websocket.handshake import over_cap
from wsapp.websocket.logsoon import printable
from wsapp.websocket.options import WebSocketOptions

log = logging.getLogger("wsapp.websocket.tracker")


class ConnectionTracker:
    """The set of open WebSockets of one server, with their heartbeat."""

    def __init__(self, ping_interval: float = 20.0, ping_timeout: float = 20.0) -> None:
        self.connections: set[WebSocket] = set()
        self.open = 0  # TCP connections being served, HTTP and WebSocket
        self.per_ip: dict[str, int] = {}  # the same, by client address
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._sweeper: gevent.Greenlet | None = None
        self._by_address: dict[Any, WebSocket] | None = None  # see find()

    def __len__(self) -> int:
        return len(self.connections)

    def enter(self, ip: str, options: WebSocketOptions) -> HandshakeRejected | None:
        """Count a new connection from `ip`; or, when that would pass a cap, count nothing
        and return the refusal to answer it with (503, or 429 for the per-IP cap)."""
        full = over_cap(options, self.open, self.per_ip.get(ip, 0), ip)
        if full is not None:
            return full
        self.open += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def leave(self, ip: str) -> None:
        """A connection counted by enter() has closed."""
        self.open -= 1
        left = self.per_ip.get(ip, 0) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)

    def add(self, ws: WebSocket, ip: str = "") -> None:
        """Track `ws` (from client address `ip`); starts the heartbeat sweeper on first use."""
        self.connections.add(ws)
        if self._by_address is not None:
            self._by_address[address_of(ws)] = ws
        if self._sweeper is None and self.ping_interval > 0:
            self._sweeper = gevent.spawn(self._sweep_forever)

    def discard(self, ws: WebSocket, ip: str = "") -> None:
        """Forget `ws` (it closed)."""
        if ws in self.connections:
            self.connections.discard(ws)
            index = self._by_address
            if index is not None and index.get(address := address_of(ws)) is ws:
                del index[address]

    def find(self, address: Any) -> WebSocket | None:
        """The connection from client `address` (its handler's client_address), in O(1).

        The index is built on the first call and kept up to date from then on. Two live
        connections with one address (possible only with addresses that are not (host,
        port), such as a Unix socket's) keep the newer, as gevent-websocket's dict does.
        """
        index = self._by_address
        if index is None:
            index = self._by_address = {address_of(ws): ws for ws in self.connections}
        return index.get(address)

    def _sweep_forever(self) -> None:
        period = max(0.05, min(self.ping_interval, self.ping_timeout or self.ping_interval) / 4)
        while True:
            gevent.sleep(period)
            try:
                self.sweep(time.monotonic())
            except Exception:  # keep the heartbeat alive whatever one connection does
                log.exception("heartbeat sweep failed")

    def sweep(self, now: float) -> None:
        """Ping connections silent for ping_interval; cut those that did not answer in time.

        Only a connection whose route is reading can see a pong, so a peer is judged dead
        while something is receiving on it, or — whatever the route is doing — while bytes
        wait for it to take them (a backlog, a send in progress): a peer that neither
        answers nor reads is gone. A route merely busy, with nothing owed to the peer, is
        not judged (its pong may be waiting unread).
        """
        interval, timeout = self.ping_interval, self.ping_timeout
        for ws in list(self.connections):
            if ws.closed or not ws.accepted:
                continue
            if ws.ping_sent_at:
                if (timeout and now - ws.ping_sent_at > timeout
                        and ws.last_seen < ws.ping_sent_at
                        and (ws.receiving or ws.stalled)):
                    log.info("no pong from %s on %s for %.1fs: closing", ws.peer,
                             printable(ws.path), now - ws.ping_sent_at)
                    gevent.spawn(ws.terminate, CLOSE_INTERNAL_ERROR, "ping timeout")
            elif now - ws.last_seen > interval:
                gevent.spawn(ws.ping)

    def close_all(self, code: int, reason: str, timeout: float) -> int:
        """Close every connection with `code` (e.g. 1001 at shutdown); wait up to `timeout`."""
        conns = list(self.connections)
        jobs = [gevent.spawn(ws.end, code, reason) for ws in conns]  # routes get their None
        gevent.joinall(jobs, timeout=timeout)
        for ws, job in zip(conns, jobs, strict=True):
            if not job.dead:
                job.kill(block=False)
                ws.terminate(code, reason)
        return len(conns)


def address_of(ws: WebSocket) -> Any:
    """The client address of `ws` as its handler has it (None without a handler)."""
    handler = ws.handler
    return None if handler is None else handler.client_address
