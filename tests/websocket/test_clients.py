"""`server.clients` (wsapp.websocket.clients) and the tracker's index behind it, with wsapp's
handler serving real connections in-process: a view of the tracked connections on servers
without a registry, 0.10.1's dict on gevent-websocket's WebSocketServer."""

from collections.abc import Iterator
from contextlib import contextmanager

import gevent
import gevent.socket
import pytest
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import Client
from geventwebsocket.server import WebSocketServer as StockWebSocketServer
from wsclient import RawClient, read_response, request

from wsapp.websocket.clients import ClientMap
from wsapp.websocket.handler import WebSocketHandler
from wsapp.websocket.options import WebSocketOptions


class Route:
    """A WSGI app: remembers each WebSocket, says "ready", then reads until the peer goes."""

    def __init__(self) -> None:
        self.opened: list = []

    def __call__(self, environ, start_response):
        ws = environ["wsgi.websocket"]
        self.opened.append(ws)
        ws.send("ready")
        while ws.receive() is not None:
            pass
        return []


@contextmanager
def serving(kind: type = WSGIServer) -> Iterator[tuple[WSGIServer, Route]]:
    """A `kind` of server with wsapp's handler serving a Route, started, stopped after."""
    route = Route()
    srv = kind(("127.0.0.1", 0), route, handler_class=WebSocketHandler, log=None)
    srv.settings = WebSocketOptions(ping_interval=0, close_timeout=0.5)
    srv.start()
    try:
        yield srv, route
    finally:
        srv.stop(timeout=1)


@pytest.fixture(params=["pywsgi", "stock-wsserver"])
def served(request) -> Iterator[tuple[WSGIServer, Route]]:
    with serving(StockWebSocketServer if request.param == "stock-wsserver" else WSGIServer) \
            as started:
        yield started


def open_client(srv: WSGIServer) -> RawClient:
    """An upgraded client on a gevent socket (the server runs in this process)."""
    sock = gevent.socket.create_connection(srv.address)
    sock.sendall(request(srv.address[1], "/"))
    response = read_response(sock)
    assert response.status == 101, response
    client = RawClient(sock, response.rest)
    assert client.recv_frame().payload == b"ready"
    return client


def wait_until(predicate, timeout: float = 3.0) -> None:
    with gevent.Timeout(timeout):
        while not predicate():
            gevent.sleep(0.01)


def address_of(client: RawClient) -> tuple[str, int]:
    return ("127.0.0.1", client.port)


def test_each_connection_is_a_client_while_its_route_runs(served):
    srv, route = served
    one, two = open_client(srv), open_client(srv)
    clients = srv.clients
    ws_one = route.opened[0]
    client = clients[address_of(one)]
    assert isinstance(client, Client)
    assert (client.address, client.ws) == (address_of(one), ws_one)
    assert ws_one.handler.active_client is client
    assert set(clients) == {address_of(one), address_of(two)} and len(clients) == 2
    client.nickname = "ann"  # what an app sets on its entry stays there
    assert [getattr(c, "nickname", None) for c in clients.values()].count("ann") == 1
    assert dict(clients.items())[address_of(one)] is client
    one.send_close()
    assert one.wait_eof()
    wait_until(lambda: address_of(one) not in clients)
    with pytest.raises(KeyError):
        clients[address_of(one)]
    assert list(clients) == [address_of(two)]
    two.close()
    wait_until(lambda: not clients)


def test_a_server_without_clients_gets_the_view_on_first_upgrade():
    with serving() as (srv, route):
        assert not hasattr(srv, "clients")
        client = open_client(srv)
        assert isinstance(srv.clients, ClientMap)
        assert srv.tracker._by_address is None  # no lookup by address yet: no index
        assert address_of(client) in srv.clients
        assert srv.tracker.find(address_of(client)) is route.opened[0]
        client.close()
        wait_until(lambda: not srv.tracker.connections)
        assert srv.tracker._by_address == {}  # kept up to date once made


@pytest.mark.parametrize("served", ["pywsgi"], indirect=True)  # 0.10.1's dict raises here
def test_iterating_survives_clients_leaving_meanwhile(served):
    srv, _ = served
    opened = {address_of(c): c for c in (open_client(srv) for _ in range(3))}
    seen = []
    for address, client in srv.clients.items():
        seen.append(address)
        opened[address].close()  # the peer drops: its route ends while this loop yields
        wait_until(lambda client=client: client.ws.closed)
        gevent.sleep(0.05)
    assert sorted(seen) == sorted(opened)
    wait_until(lambda: not srv.clients)


def test_entries_other_handlers_put_in_stay_beside_the_view():
    with serving() as (srv, _):
        mine = open_client(srv)
        clients = srv.clients
        foreign = Client(("10.0.0.1", 9), None)
        clients[foreign.address] = foreign  # what gevent-websocket's handler does
        assert clients[foreign.address] is foreign and len(clients) == 2
        assert set(clients) == {foreign.address, address_of(mine)}
        del clients[foreign.address]
        with pytest.raises(KeyError):  # a connection of wsapp's leaves with its route
            del clients[address_of(mine)]
        assert list(clients) == [address_of(mine)]
        mine.close()
