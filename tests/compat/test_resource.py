"""gevent-websocket's own Resource + WebSocketApplication (an echo, and a chat broadcasting
through `self.ws.handler.server.clients` as the library's chat example does), unchanged,
under each handler and server: on_open, on_message and on_close are each observed, and the
server's CPU is idle once its clients have left."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import websocket

from .appserver import AppServer
from .conftest import HANDLER_SERVERS, serve

APP = "resource_app:resource"
TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0  # websocket-client waits this long for the server's close frame


@pytest.fixture(params=HANDLER_SERVERS)
def resource_server(request, pool) -> Iterator[AppServer]:
    yield from serve(request, pool, APP, *request.param)


def connect(server: AppServer, path: str) -> tuple[websocket.WebSocket, int]:
    """A websocket-client connection and its local port (the app's REMOTE_PORT)."""
    ws = websocket.create_connection(server.url(path), timeout=TIMEOUT)
    return ws, ws.sock.getsockname()[1]


def test_echo_open_message_close(resource_server):
    ws, peer = connect(resource_server, "/echo")
    try:
        resource_server.wait_events("open", app="echo", peer=str(peer))
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\x00\x01\xfe\xff")
        opcode, data = ws.recv_data()
        assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\x00\x01\xfe\xff")
    finally:
        ws.close(timeout=CLOSE_TIMEOUT)
    resource_server.wait_events("message", count=2, app="echo", peer=str(peer))
    resource_server.wait_events("close", app="echo", peer=str(peer), timeout=3)


def test_chat_broadcast_through_server_clients(resource_server):
    names = [f"n{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    opened = [connect(resource_server, "/chat") for _ in names]
    try:
        for (ws, _), name in zip(opened, names, strict=True):
            ws.send(json.dumps({"msg_type": "update_clients", "nickname": name}))
            listed = json.loads(ws.recv())
            assert listed["msg_type"] == "update_clients"
            assert name in listed["clients"]
        assert set(names) <= set(listed["clients"])  # the last one sees all three
        opened[0][0].send(json.dumps({"msg_type": "message", "nickname": names[0],
                                      "message": "hi all"}))
        for ws, _ in opened:
            assert json.loads(ws.recv()) == {"msg_type": "message", "nickname": names[0],
                                             "message": "hi all"}
    finally:
        for ws, _ in opened:
            ws.close(timeout=CLOSE_TIMEOUT)
    for _, peer in opened:
        resource_server.wait_events("close", app="chat", peer=str(peer), timeout=3)


def test_idle_cpu_after_clients_leave(resource_server):
    opened = [connect(resource_server, "/echo") for _ in range(5)]
    for ws, _ in opened:
        ws.send("ping")
        assert ws.recv() == "ping"
    for ws, _ in opened:
        ws.send_close()
    for ws, _ in opened:
        ws.shutdown()  # a spinning server would never answer: do not wait for it
    used = resource_server.cpu_used(0.25)  # let the closes finish
    used = resource_server.cpu_used(1.0)
    assert used < 0.1, f"the server used {used:.2f} CPU-s in the 1 s after its clients left"
    assert resource_server.healthy(), "the server stopped answering after its clients left"
