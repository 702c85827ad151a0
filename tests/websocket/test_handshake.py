"""The opening handshake over raw sockets: refusals with the right status, headers and a
readable body; Origin checks; the connection limit; unknown paths."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from wsclient import KEY, RawClient, handshake


def refused(resp, status: int) -> str:
    """Check a refusal and return its body as text."""
    assert resp.status == status, resp
    assert resp.headers["content-type"].startswith("text/plain"), resp.headers
    assert resp.headers.get("connection", "").lower() == "close"
    text = resp.body.decode("utf-8")
    assert text.strip(), "a refusal explains itself"
    return text


def test_valid_handshake_gets_101_with_accept(server):
    sock, resp = handshake(server.port)
    with sock:
        assert resp.status == 101
        assert resp.headers["upgrade"].lower() == "websocket"
        assert resp.headers["connection"].lower() == "upgrade"
        expected = hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
        assert resp.headers["sec-websocket-accept"] == base64.b64encode(
            expected.digest()).decode()


def test_missing_version_gets_426_with_version_header(server):
    sock, resp = handshake(server.port, omit=("Sec-WebSocket-Version",))
    with sock:
        text = refused(resp, 426)
    assert resp.headers["sec-websocket-version"] == "13"
    assert "Sec-WebSocket-Version" in text


@pytest.mark.parametrize("version", ["8", "14", "thirteen"])
def test_unsupported_version_gets_400_with_version_header(server, version):
    sock, resp = handshake(server.port, headers={"Sec-WebSocket-Version": version})
    with sock:
        text = refused(resp, 400)
    assert resp.headers["sec-websocket-version"] == "13"
    assert version in text


@pytest.mark.parametrize("key", [
    "",
    "not base64 at all!",
    base64.b64encode(b"fifteen bytes!!").decode(),
    base64.b64encode(b"seventeen bytes!!").decode(),
])
def test_bad_key_gets_400(server, key):
    headers = {"Sec-WebSocket-Key": key}
    sock, resp = handshake(server.port, headers=headers)
    with sock:
        text = refused(resp, 400)
    assert "Sec-WebSocket-Key" in text


def test_missing_key_gets_400(server):
    sock, resp = handshake(server.port, omit=("Sec-WebSocket-Key",))
    with sock:
        refused(resp, 400)


def test_http_10_gets_400(server):
    sock, resp = handshake(server.port, version="HTTP/1.0")
    with sock:
        text = refused(resp, 400)
    assert "HTTP/1.1" in text


def test_connection_header_without_upgrade_token_gets_400(server):
    sock, resp = handshake(server.port, headers={"Connection": "keep-alive"})
    with sock:
        refused(resp, 400)


def test_unknown_path_gets_404(server):
    sock, resp = handshake(server.port, "/ws/no-such-route")
    with sock:
        assert resp.status == 404
        assert resp.body, "the 404 has a body"
        resp.body.decode("utf-8")
    server.wait_for_log(r"handshake refused by route \S+ /ws/no-such-route: 404")


def test_disallowed_origin_gets_403(server):
    sock, resp = handshake(server.port, headers={"Origin": "http://evil.example"})
    with sock:
        text = refused(resp, 403)
    assert "evil.example" in text


def test_no_origin_is_allowed(server):
    RawClient.open(server.port).close()


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "HTTP://127.0.0.1:{port}/"])
def test_same_host_origin_is_allowed(server, origin):
    RawClient.open(server.port, headers={"Origin": origin.format(port=server.port)}).close()


def test_same_host_other_port_is_refused(server):
    origin = f"http://127.0.0.1:{server.port + 1}"
    sock, resp = handshake(server.port, headers={"Origin": origin})
    with sock:
        refused(resp, 403)


def test_allowed_origins_extends_the_list(start_server):
    srv = start_server("--allowed-origins", "https://app.example, http://other.example:8080")
    for origin in ("https://app.example", "http://other.example:8080",
                   f"http://127.0.0.1:{srv.port}"):
        RawClient.open(srv.port, headers={"Origin": origin}).close()
    for origin in ("http://evil.example", "http://app.example", "http://other.example"):
        sock, resp = handshake(srv.port, headers={"Origin": origin})
        with sock:
            refused(resp, 403)


def test_allowed_origins_star_allows_any(start_server):
    srv = start_server("--allowed-origins", "*")
    for origin in ("http://evil.example", "null"):
        RawClient.open(srv.port, headers={"Origin": origin}).close()


def test_max_connections_refuses_the_next_with_503(start_server):
    srv = start_server("--max-connections", "3")
    clients = [RawClient.open(srv.port) for _ in range(3)]
    try:
        sock, resp = handshake(srv.port)
        with sock:
            text = refused(resp, 503)
        assert resp.headers.get("retry-after")
        assert "3" in text
        # A slot frees once a client leaves (polled: the server notices the close first).
        clients.pop().close()
        deadline = time.monotonic() + 10
        while True:
            sock, resp = handshake(srv.port)
            sock.close()
            if resp.status == 101 or time.monotonic() > deadline:
                break
            assert resp.status == 503
            time.sleep(0.1)
        assert resp.status == 101
    finally:
        for client in clients:
            client.close()
