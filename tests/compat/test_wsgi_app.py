"""A plain WSGI app (no framework) written for gevent-websocket, reading
environ["wsgi.websocket"], unchanged under each handler and server."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest
import websocket

from .appserver import AppServer
from .conftest import HANDLER_SERVERS, serve

APP = "wsgi_app:application"
TIMEOUT = 5.0


@pytest.fixture(params=HANDLER_SERVERS)
def wsgi_server(request, pool) -> Iterator[AppServer]:
    yield from serve(request, pool, APP, *request.param)


@pytest.fixture
def connect(wsgi_server) -> Iterator:
    """connect(path, **options) -> an open websocket-client connection, closed after."""
    opened: list[websocket.WebSocket] = []

    def open_one(path: str, **options) -> websocket.WebSocket:
        opened.append(websocket.create_connection(wsgi_server.url(path), timeout=TIMEOUT,
                                                  **options))
        return opened[-1]

    try:
        yield open_one
    finally:
        for ws in opened:
            ws.close(timeout=2)


@pytest.mark.parametrize("message", ["hello", "h\u00e9llo \u2603 \U0001f600", "x" * 70_000,
                                     b"\x00\x01\xfe\xff", os.urandom(100_000)],
                         ids=["text", "unicode", "text-70k", "binary", "binary-100k"])
def test_echo(connect, message):
    ws = connect("/echo")
    ws.send(message, websocket.ABNF.OPCODE_BINARY if isinstance(message, bytes) else
            websocket.ABNF.OPCODE_TEXT)
    opcode, data = ws.recv_data()
    if isinstance(message, bytes):
        assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, message)
    else:
        assert (opcode, data.decode()) == (websocket.ABNF.OPCODE_TEXT, message)


def test_socket_attributes(wsgi_server, connect):
    origin = f"http://127.0.0.1:{wsgi_server.port}"
    ws = connect("/info?room=7", origin=origin, header=["Sec-WebSocket-Protocol: chat"])
    assert json.loads(ws.recv()) == {
        "version": "13", "path": "/info", "origin": origin, "protocol": "chat",
        "query": "room=7", "same_environ": True, "websocket_version": "13"}


def test_route_ends_when_peer_closes(wsgi_server):
    ws = websocket.create_connection(wsgi_server.url("/echo"), timeout=TIMEOUT)
    peer = str(ws.sock.getsockname()[1])
    ws.send("bye")
    assert ws.recv() == "bye"
    ws.close(timeout=2)
    wsgi_server.wait_events("done", path="/echo", peer=peer, timeout=3)


def test_room_broadcast_survives_a_dropped_peer(wsgi_server, connect):
    members = [connect("/room") for _ in range(3)]
    gone = members.pop()
    peer = str(gone.sock.getsockname()[1])
    members[0].send("before")
    for ws in (*members, gone):
        assert ws.recv() == "before"
    gone.sock.shutdown(socket.SHUT_RDWR)  # no close frame: the TCP connection just ends
    gone.sock.close()
    wsgi_server.wait_events("done", path="/room", peer=peer, timeout=3)
    members[1].send("after")
    for ws in members:
        assert ws.recv() == "after"
