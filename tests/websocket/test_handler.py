"""The handler in-process on gevent sockets: handshake helpers, buffered input, refusals."""

import base64
import functools
import os

import gevent
import gevent.socket
import pytest
from flask import Flask, request

from wsapp.config import Settings
from wsapp.server import make_server
from wsapp.websocket.frames import OP_TEXT, build_frame
from wsapp.websocket.handler import accept_key, call_app, origin_allowed, share_header_strings
from wsapp.websocket.protocol import EV_MESSAGE, Receiver


def test_accept_key_rfc_example():
    # RFC 6455 §1.3
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("origin,host,allowed,ok", [
    (None, "example.com", [], True),  # non-browser clients send no Origin
    ("http://example.com", "example.com", [], True),
    ("http://example.com:80", "example.com", [], True),
    ("https://example.com", "example.com:443", [], True),
    ("http://example.com:8080", "example.com:8080", [], True),
    ("http://evil.com", "example.com", [], False),
    ("http://example.com:8081", "example.com:8080", [], False),
    # Behind a TLS-terminating proxy the Host has no port and the page is https: same site.
    ("https://example.com", "example.com", [], True),
    ("https://example.com", "example.com:80", [], False),
    ("http://evil.com", "example.com", ["http://evil.com"], True),
    ("http://EVIL.com/", "example.com", ["http://evil.com"], True),
    ("http://evil.com", "example.com", ["*"], True),
    ("http://[::1]:5000", "[::1]:5000", [], True),
    ("null", "example.com", [], False),
])
def test_origin_rules(origin, host, allowed, ok):
    assert origin_allowed(origin, host, allowed) is ok


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
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


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


def test_frame_pipelined_with_the_handshake_is_not_lost(server):
    srv, seen = server
    sock = gevent.socket.create_connection(srv.address)
    # Handshake and a first frame in one write: pywsgi's reader buffers the frame, and the
    # handler must hand those bytes over when it drops that reader.
    sock.sendall(handshake() + build_frame(OP_TEXT, b"early", mask=b"abcd"))
    head, rest = read_response(sock)
    assert head.startswith("HTTP/1.1 101")
    receiver = Receiver(1 << 20, mask_required=False)
    events = receiver.feed(rest)
    with gevent.Timeout(5):
        while not events:
            events += receiver.feed(sock.recv(4096))
    assert events[0] == (EV_MESSAGE, "early") and seen == ["early"]
    sock.close()


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
