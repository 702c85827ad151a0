"""The handler in-process on gevent sockets: handshake helpers, buffered input, refusals."""

import base64
import functools
import logging
import os

import gevent
import gevent.socket
import pytest
from flask import Flask, request
from gevent.pywsgi import WSGIServer
from geventwebsocket.exceptions import WebSocketError as StockWebSocketError

from wsapp.config import Settings
from wsapp.server import make_server
from wsapp.websocket import handler as handler_module
from wsapp.websocket.frames import OP_CLOSE, OP_TEXT, build_close_payload, build_frame
from wsapp.websocket.handler import (
    WebSocketHandler,
    call_app,
    request_headers,
    share_header_strings,
)
from wsapp.websocket.options import WebSocketOptions
from wsapp.websocket.protocol import EV_CLOSE, EV_MESSAGE, Receiver


@pytest.fixture
def server():
    app = Flask(__name__)
    seen = []

    @app.route("/ws", websocket=True)
    def ws_route():
        ws = request.environ["wsgi.websocket"]
        while (msg := ws.receive()) is not None:
            seen.append(msg)
            ws.send(msg)
        return ""

    @app.route("/private", websocket=True)
    def private():
        return "no token", 401

    srv = make_server(app, Settings(ping_interval=0, handshake_timeout=2),
                      listener=("127.0.0.1", 0))
    srv.start()
    yield srv, seen
    srv.stop(timeout=1)


def handshake(path="/ws"):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def read_response(sock):
    data = b""
    with gevent.Timeout(5):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode(), rest


def first_event_after_upgrade(address, payload: bytes):
    """Send the handshake and a text frame in one write; the first event the server sends
    back after its 101."""
    sock = gevent.socket.create_connection(address)
    try:
        sock.sendall(handshake() + build_frame(OP_TEXT, payload, mask=b"abcd"))
        head, rest = read_response(sock)
        assert head.startswith("HTTP/1.1 101")
        receiver = Receiver(1 << 20, mask_required=False)
        events = receiver.feed(rest)
        with gevent.Timeout(5):
            while not events:
                events += receiver.feed(sock.recv(4096))
        return events[0]
    finally:
        sock.close()


def test_frame_pipelined_with_the_handshake_is_not_lost(server):
    srv, seen = server
    # Handshake and a first frame in one write: pywsgi's reader buffers the frame, and the
    # handler must hand those bytes over when it drops that reader.
    assert first_event_after_upgrade(srv.address, b"early") == (EV_MESSAGE, "early")
    assert seen == ["early"]


def test_route_refusal_is_an_http_response(server):
    srv, _ = server
    sock = gevent.socket.create_connection(srv.address)
    sock.sendall(handshake("/private"))
    head, body = read_response(sock)
    assert head.startswith("HTTP/1.1 401") and b"no token" in body
    sock.close()


def test_unknown_path_is_404(server):
    srv, _ = server
    sock = gevent.socket.create_connection(srv.address)
    sock.sendall(handshake("/nowhere"))
    head, _ = read_response(sock)
    assert head.startswith("HTTP/1.1 404")
    sock.close()


def test_header_names_and_common_values_are_shared_between_requests():
    def environ(key: str) -> dict:
        # Built at run time, as pywsgi does: equal strings, distinct objects.
        return {"HTTP_" + "user_agent".upper(): "Mozilla/5.0 " + "x" * 10,
                "HTTP_" + "sec_websocket_key".upper(): key + "=",
                "REMOTE_PORT": str(40000 + len(key)), "wsgi.input": object()}

    one = share_header_strings(environ("a" * 23))
    two = share_header_strings(environ("b" * 23))
    assert one.keys() == two.keys() == environ("c").keys()
    (ua1, key1), (ua2, key2) = [[k for k in d if k.startswith("HTTP_")] for d in (one, two)]
    assert ua1 is ua2 and key1 is key2  # one copy of each header name
    assert one["HTTP_USER_AGENT"] is two["HTTP_USER_AGENT"]  # and of a common value
    assert one["HTTP_SEC_WEBSOCKET_KEY"] == "a" * 23 + "="  # unique values left as they are
    assert one["wsgi.input"] is not two["wsgi.input"]


class _CallableApp:
    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, environ: dict, start_response) -> list:
        self.calls.append(environ)
        start_response("200 OK", [])
        return [b"ok"]


def test_call_app_calls_python_and_builtin_callables_alike():
    seen = []
    app = _CallableApp()
    env = {"PATH_INFO": "/"}
    assert call_app(app, env, lambda s, h: seen.append(s)) == [b"ok"]
    assert app.calls == [env] and seen == ["200 OK"]

    def plain(environ, start_response):
        return [environ["PATH_INFO"].encode()]

    assert call_app(plain, env, None) == [b"/"]
    assert call_app(functools.partial(plain), env, None) == [b"/"]  # a C-level __call__


def test_request_headers_by_lower_case_name():
    env = {"HTTP_SEC_WEBSOCKET_KEY": "k", "HTTP_UPGRADE": "websocket", "PATH_INFO": "/",
           "CONTENT_TYPE": "text/plain", "wsgi.input": None}
    assert request_headers(env) == {"sec-websocket-key": "k", "upgrade": "websocket"}


def test_bare_wsgiserver_reads_websocket_options_from_the_environment(monkeypatch):
    # No wsapp.server, no Settings: the handler alone, configured by WSAPP_* variables.
    monkeypatch.setattr(handler_module, "_default_settings", None)
    monkeypatch.setenv("WSAPP_MAX_MESSAGE_SIZE", "10")

    def echo(environ, start_response):
        ws = environ["wsgi.websocket"]
        while (msg := ws.receive()) is not None:
            ws.send(msg)
        return []

    srv = WSGIServer(("127.0.0.1", 0), echo, handler_class=WebSocketHandler, log=None)
    srv.start()
    try:
        kind, (code, _) = first_event_after_upgrade(srv.address, b"0123456789!")
        assert (kind, code) == (EV_CLOSE, 1009)  # 11 bytes > 10
        assert type(srv.settings) is WebSocketOptions  # not the server's Settings
    finally:
        srv.stop(timeout=1)


# -- gevent-websocket 0.10.1's flow and hooks ----------------------------------------------


def serve_app(app, handler_class=WebSocketHandler) -> WSGIServer:
    srv = WSGIServer(("127.0.0.1", 0), app, handler_class=handler_class, log=None)
    srv.settings = WebSocketOptions(ping_interval=0, close_timeout=0.5)
    srv.start()
    return srv


def upgraded(srv: WSGIServer) -> gevent.socket.socket:
    sock = gevent.socket.create_connection(srv.address)
    sock.sendall(handshake("/"))
    head, _ = read_response(sock)
    assert head.startswith("HTTP/1.1 101"), head
    return sock


def wait_for(predicate, timeout=3.0):
    with gevent.Timeout(timeout):
        while not predicate():
            gevent.sleep(0.01)


class AppWithCurrentApp:
    """A WSGI app naming a `current_app`, whose on_close() gevent-websocket calls when a
    closed socket is used; its route ignores receive()'s None once."""

    def __init__(self):
        self.current_app = self
        self.on_close_reasons = []
        self.outcome = []

    def on_close(self, reason):
        self.on_close_reasons.append(reason)

    def __call__(self, environ, start_response):
        ws = environ["wsgi.websocket"]
        ws.send("hi")
        assert ws.receive() is None
        try:
            ws.receive()
        except StockWebSocketError as exc:
            self.outcome.append(type(exc).__name__)
        return []


@pytest.mark.parametrize("peer_leaves,told", [
    ("close frame", ["Connection is already closed"]),
    ("drop", ["Connection closed", "Connection is already closed"]),
])
def test_current_app_hears_of_a_closed_socket_being_used(peer_leaves, told):
    app = AppWithCurrentApp()
    srv = serve_app(app)
    try:
        sock = upgraded(srv)
        if peer_leaves == "drop":
            sock.close()
        else:
            sock.sendall(build_frame(OP_CLOSE, build_close_payload(1000), mask=b"abcd"))
        wait_for(lambda: app.outcome)
        assert app.outcome == ["ConnectionClosed"]
        assert app.on_close_reasons == told
        sock.close()
    finally:
        srv.stop(timeout=1)


def test_a_route_ending_on_its_closed_socket_is_no_error(caplog):
    def careless(environ, start_response):
        ws = environ["wsgi.websocket"]
        while True:  # ignores None: the next receive() raises, as with gevent-websocket
            ws.receive()

    srv = serve_app(careless)
    caplog.set_level(logging.INFO, logger="wsapp.websocket.handler")
    try:
        sock = upgraded(srv)
        sock.sendall(build_frame(OP_CLOSE, build_close_payload(1000), mask=b"abcd"))
        wait_for(lambda: any("ended on its closed connection" in r.getMessage()
                             for r in caplog.records))
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        sock.close()
    finally:
        srv.stop(timeout=1)


def test_prevent_wsgi_call_upgrades_without_running_the_app():
    calls = []

    class Quiet(WebSocketHandler):
        prevent_wsgi_call = True

    srv = serve_app(lambda environ, start_response: calls.append(environ) or [], Quiet)
    try:
        sock = gevent.socket.create_connection(srv.address)
        sock.sendall(handshake("/"))
        with gevent.Timeout(3):
            assert sock.recv(100) == b""  # nobody used the WebSocket: no 101 went out
        assert calls == []
    finally:
        srv.stop(timeout=1)


def test_logger_is_the_servers():
    loggers = []

    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        loggers.append((ws.logger, ws.handler.logger, ws.handler.server.logger))
        return []

    srv = serve_app(app)
    try:
        upgraded(srv).close()
        wait_for(lambda: loggers)
        ws_logger, handler_logger, server_logger = loggers[0]
        assert ws_logger is handler_logger is server_logger
        assert handler_logger.name == "wsapp.websocket.handler"
    finally:
        srv.stop(timeout=1)
