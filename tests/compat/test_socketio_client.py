"""Flask-SocketIO (async_mode="gevent") driven by the real python-socketio client on the
websocket transport only, under each handler and server."""

from __future__ import annotations

import itertools
import queue
import uuid
from collections.abc import Iterator

import pytest
import socketio

from .appserver import AppServer
from .conftest import HANDLER_SERVERS, serve

APP = "socketio_app:app"
TOKEN = "let-me-in"  # the app's
WAIT = 5.0


@pytest.fixture(params=HANDLER_SERVERS)
def sio_server(request, pool) -> Iterator[AppServer]:
    yield from serve(request, pool, APP, *request.param)


class Client:
    """A python-socketio Client whose received events land in one queue per event name."""

    _names = itertools.count()

    def __init__(self, server: AppServer, token: str = TOKEN) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.inbox: dict[str, queue.Queue] = {}
        for event in ("room_message", "shouted", "progress", "progress_done", "blob",
                      "handler_error", "connect_error"):
            self.inbox[event] = queue.Queue()
            self.sio.on(event, self._keep(event))
        self.sio.connect(server.base, auth={"token": token, "name": f"c{next(self._names)}"},
                         transports=["websocket"], wait_timeout=WAIT)

    def _keep(self, event: str):
        def handler(*args):
            self.inbox[event].put(args[0] if len(args) == 1 else args)
        return handler

    def next(self, event: str, timeout: float = WAIT):
        try:
            return self.inbox[event].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {event!r} within {timeout}s") from None

    def call(self, event: str, *args):
        return self.sio.call(event, args[0] if len(args) == 1 else args, timeout=WAIT)

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def clients(sio_server) -> Iterator:
    """clients(n) -> n connected Clients, all disconnected after the test."""
    opened: list[Client] = []

    def connect(n: int = 1) -> list[Client]:
        for _ in range(n):
            opened.append(Client(sio_server))
        return opened[-n:]

    try:
        yield connect
    finally:
        for client in opened:
            client.close()


def test_connect_on_websocket_transport(sio_server, clients):
    (client,) = clients(1)
    assert client.sio.transport() == "websocket"
    assert client.sio.connected
    sio_server.wait_events("connect", sid=client.sio.get_sid())


def test_bad_token_refused(sio_server):
    client = socketio.Client(reconnection=False)
    refusals: queue.Queue = queue.Queue()
    client.on("connect_error", refusals.put)
    token = f"wrong-{uuid.uuid4().hex[:8]}"
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(sio_server.base, auth={"token": token}, transports=["websocket"],
                       wait_timeout=WAIT)
    client.disconnect()
    assert refusals.get(timeout=WAIT) == {"message": "bad token"}
    sio_server.wait_events("refused", token=token)


def test_emit_with_ack(clients):
    (client,) = clients(1)
    payload = {"text": "h\u00e9llo \u2603", "n": [1, 2.5, None, True]}
    assert client.call("echo", payload) == payload
    answers: queue.Queue = queue.Queue()
    client.sio.emit("echo", "with callback", callback=answers.put)
    assert answers.get(timeout=WAIT) == "with callback"


def test_rooms(clients):
    member, sender = clients(2)
    room = f"room-{uuid.uuid4().hex[:8]}"
    assert member.call("join", room) == f"joined {room}"
    assert sender.call("to_room", room, "hello room") == "sent"
    assert member.next("room_message") == {"room": room, "text": "hello room"}
    assert member.call("leave", room) == f"left {room}"
    sender.call("to_room", room, "nobody hears this")
    sender.call("shout", "sentinel")
    assert member.next("shouted") == "sentinel"  # sent after the room message: order holds
    assert member.inbox["room_message"].empty()


def test_broadcast(clients):
    everyone = clients(3)
    everyone[0].sio.emit("shout", "to all")
    for client in everyone:
        assert client.next("shouted") == "to all"


def test_background_task_progress(clients):
    (client,) = clients(1)
    assert client.call("work", 5) == "started"
    assert [client.next("progress") for _ in range(5)] == [
        {"step": step, "of": 5} for step in range(1, 6)]
    assert client.next("progress_done") == 5


def test_binary_payloads(clients):
    (client,) = clients(1)
    data = bytes(range(256)) * 40  # 10 KiB, every byte value
    assert client.call("reverse", data) == data[::-1]
    client.sio.emit("blob", 300)
    got = client.next("blob")
    assert got == {"size": 300, "data": bytes(i % 256 for i in range(300))}


def test_handler_error(sio_server, clients):
    (client,) = clients(1)
    assert client.call("boom", "first") == {"error": "kaboom: first"}
    assert client.next("handler_error") == {"type": "ValueError", "message": "kaboom: first"}
    sio_server.wait_events("error", sid=client.sio.get_sid(), message="kaboom: first")
    assert client.call("echo", "still here") == "still here"


def test_disconnect_seen(sio_server, clients):
    (client,) = clients(1)
    sid = client.sio.get_sid()
    client.close()
    (event,) = sio_server.wait_events("disconnect", sid=sid)
    # the client sends its DISCONNECT packet and closes at once: either may be seen first
    assert event["reason"] in ("client disconnect", "transport close")
