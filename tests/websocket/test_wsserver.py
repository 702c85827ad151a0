"""wsapp.websocket.server.WebSocketServer: gevent-websocket's WebSocketServer with wsapp's
handler (the compat suite, tests/compat, runs third-party apps on it with both handlers)."""

import inspect
import logging

import gevent
import gevent.socket
from geventwebsocket.server import WebSocketServer as StockWebSocketServer
from wsclient import RawClient, read_response, request

from wsapp.websocket.clients import ClientMap
from wsapp.websocket.frames import OP_TEXT
from wsapp.websocket.handler import WebSocketHandler
from wsapp.websocket.options import WebSocketOptions
from wsapp.websocket.server import WebSocketServer


def echo(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
    while (message := ws.receive()) is not None:
        ws.send(message)
    return []


def started(**kwargs) -> WebSocketServer:
    srv = WebSocketServer(("127.0.0.1", 0), echo, log=None, **kwargs)
    srv.settings = WebSocketOptions(ping_interval=0)
    srv.start()
    return srv


def test_same_constructor_and_attributes_as_gevent_websockets():
    assert WebSocketServer.handler_class is WebSocketHandler
    assert WebSocketServer.debug_log_format == StockWebSocketServer.debug_log_format
    srv = WebSocketServer(("127.0.0.1", 0), echo)
    assert isinstance(srv.clients, ClientMap) and len(srv.clients) == 0  # before serving
    assert (srv.debug, srv.pre_start_hook) == (False, None)
    for name in ("__init__", "handle"):
        ours, theirs = (inspect.signature(getattr(cls, name)).parameters
                        for cls in (WebSocketServer, StockWebSocketServer))
        assert [(p.name, p.kind) for p in ours.values()] == [
            (p.name, p.kind) for p in theirs.values()]


def test_serves_websockets_and_lists_them_in_clients():
    srv = started()
    try:
        sock = gevent.socket.create_connection(srv.address)
        sock.sendall(request(srv.address[1], "/"))
        response = read_response(sock)
        assert response.status == 101
        client = RawClient(sock, response.rest)
        client.send_frame(OP_TEXT, b"hello")
        assert client.recv_frame().payload == b"hello"
        (address,) = srv.clients
        assert address == ("127.0.0.1", client.port)
        client.close()
    finally:
        srv.stop(timeout=1)


def test_pre_start_hook_keeps_a_request_plain():
    seen = []

    def hook(handler) -> bool:
        seen.append(type(handler).__name__)
        return True

    srv = started(pre_start_hook=hook)
    try:
        sock = gevent.socket.create_connection(srv.address)
        sock.sendall(request(srv.address[1], "/"))
        response = read_response(sock)
        assert (response.status, response.body) == (200, b"plain")
        assert seen == ["WebSocketHandler"]
        sock.close()
    finally:
        srv.stop(timeout=1)


def test_debug_logger_prints_debug_records():
    quiet = WebSocketServer(("127.0.0.1", 0), echo)
    assert quiet.logger is logging.getLogger("wsapp.websocket.server")
    assert not quiet.logger.handlers
    loud = WebSocketServer(("127.0.0.1", 0), echo, debug=True)
    logger = loud.logger
    try:
        assert logger.isEnabledFor(logging.DEBUG)
        (printer,) = logger.handlers
        assert printer.formatter._fmt == WebSocketServer.debug_log_format
    finally:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
