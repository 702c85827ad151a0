"""The opening handshake: first sans-I/O (wsapp.websocket.handshake with plain request data:
every refusal, the accept path, deflate offers, subprotocols), then over raw sockets against
a live server (refusals with the right status, headers and a readable body; Origin checks;
the connection limit; unknown paths)."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from wsclient import KEY, RawClient, handshake

from wsapp.websocket.deflate import DeflateParams, PerMessageDeflate
from wsapp.websocket.exceptions import HandshakeRejected
from wsapp.websocket.handshake import (
    Request,
    accept,
    accept_key,
    origin_allowed,
    refusal_bytes,
    response_bytes,
)
from wsapp.websocket.options import WebSocketOptions

# -- sans-I/O: plain request data in, an Accept or a HandshakeRejected out --------------------

OPTIONS = WebSocketOptions()
HEADERS = {"host": "example.com:8080", "upgrade": "websocket", "connection": "Upgrade",
           "sec-websocket-key": KEY, "sec-websocket-version": "13"}


def request(*, method="GET", version="HTTP/1.1", path="/ws", client="10.0.0.1", omit=(),
            **headers):
    """A Request from HEADERS, with `headers` (underscores for dashes) overriding them."""
    fields = {k: v for k, v in HEADERS.items() if k not in omit}
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    return Request(method, version, path, fields, client)


def rejected(req, options=OPTIONS, **kw) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as info:
        accept(req, options, **kw)
    return info.value


def test_accept_key_rfc_example():
    # RFC 6455 §1.3
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_path_gives_the_101_headers():
    agreed = accept(request(), OPTIONS)
    assert agreed.headers == [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                              ("Sec-WebSocket-Accept", accept_key(KEY))]
    assert (agreed.deflate, agreed.protocol, agreed.extensions) == (None, None, None)
    raw = agreed.response_bytes()
    assert raw.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert raw.endswith(b"\r\n\r\n")
    assert f"Sec-WebSocket-Accept: {accept_key(KEY)}\r\n".encode() in raw


@pytest.mark.parametrize("connection", ["Upgrade", "keep-alive, Upgrade", "UPGRADE"])
def test_connection_header_may_list_other_tokens(connection):
    assert accept(request(connection=connection), OPTIONS).headers[0] == ("Upgrade", "websocket")


@pytest.mark.parametrize("req,status,says", [
    (request(version="HTTP/1.0"), "400 Bad Request", "HTTP/1.1"),
    (request(method="POST"), "400 Bad Request", "GET"),
    (request(connection="keep-alive"), "400 Bad Request", "upgrade"),
    (request(omit=("connection",)), "400 Bad Request", "upgrade"),
    (request(upgrade="h2c"), "400 Bad Request", "websocket"),
    (request(sec_websocket_version="8"), "400 Bad Request", "'8'"),
    (request(sec_websocket_version="thirteen"), "400 Bad Request", "thirteen"),
    (request(omit=("sec-websocket-key",)), "400 Bad Request", "Sec-WebSocket-Key"),
    (request(sec_websocket_key="not base64 at all!"), "400 Bad Request", "Sec-WebSocket-Key"),
    (request(sec_websocket_key=base64.b64encode(b"fifteen bytes!!").decode()),
     "400 Bad Request", "16 bytes"),
    (request(origin="http://evil.example"), "403 Forbidden", "evil.example"),
    (request(origin="http://example.com:8081"), "403 Forbidden", "8081"),
])
def test_each_refusal_says_why(req, status, says):
    rej = rejected(req)
    assert rej.status == status
    assert says in rej.reason


def test_missing_version_gets_426_naming_the_version_spoken():
    rej = rejected(request(omit=("sec-websocket-version",)))
    assert rej.status == "426 Upgrade Required"
    assert rej.headers == [("Sec-WebSocket-Version", "13")]


def test_unsupported_version_names_the_version_spoken():
    assert rejected(request(sec_websocket_version="14")).headers == [
        ("Sec-WebSocket-Version", "13")]


def test_checks_run_in_order_the_first_problem_is_reported():
    rej = rejected(request(version="HTTP/1.0", method="POST", origin="http://evil.example"))
    assert "HTTP/1.1" in rej.reason
    rej = rejected(request(sec_websocket_version="8", origin="http://evil.example"),
                   connections=10**6)
    assert rej.status == "400 Bad Request"


@pytest.mark.parametrize("origin", ["http://example.com:8080", "HTTP://Example.com:8080/"])
def test_same_host_origin_is_accepted(origin):
    accept(request(origin=origin), OPTIONS)


def test_allowlist_and_star_extend_origins():
    listed = OPTIONS.replace(allowed_origins="https://app.example")
    accept(request(origin="https://app.example"), listed)
    assert rejected(request(origin="http://app.example"), listed).status == "403 Forbidden"
    accept(request(origin="http://evil.example"), OPTIONS.replace(allowed_origins="*"))


def test_connection_limits_are_plain_numbers():
    capped = OPTIONS.replace(max_connections=3, max_connections_per_ip=2)
    accept(request(), capped, connections=2, connections_from_client=1)
    rej = rejected(request(), capped, connections=3)
    assert rej.status == "503 Service Unavailable" and "3" in rej.reason
    assert ("Retry-After", "5") in rej.headers
    rej = rejected(request(client="10.9.9.9"), capped, connections=2, connections_from_client=2)
    assert rej.status == "429 Too Many Requests" and "10.9.9.9" in rej.reason
    assert ("Retry-After", "5") in rej.headers
    accept(request(), OPTIONS, connections_from_client=10**6)  # 0 = no per-address cap


@pytest.mark.parametrize("offer,answer,params", [
    ("permessage-deflate", "permessage-deflate", DeflateParams()),
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate", DeflateParams()),
    ("permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
     DeflateParams(server_no_context_takeover=True, client_max_window_bits=10)),
    # the first acceptable offer wins; a malformed one before it is skipped
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate",
     "permessage-deflate", DeflateParams()),
])
def test_deflate_offer_is_negotiated(offer, answer, params):
    agreed = accept(request(sec_websocket_extensions=offer),
                    OPTIONS.replace(deflate_level=6))
    assert isinstance(agreed.deflate, PerMessageDeflate)
    assert agreed.deflate.params == params and agreed.deflate.level == 6
    assert agreed.extensions == answer
    assert ("Sec-WebSocket-Extensions", answer) in agreed.headers


@pytest.mark.parametrize("offer", ["x-webkit-deflate-frame", "permessage-deflate; bogus",
                                   "permessage-deflate; server_max_window_bits=16", ""])
def test_unacceptable_deflate_offer_means_no_compression(offer):
    agreed = accept(request(sec_websocket_extensions=offer), OPTIONS)
    assert (agreed.deflate, agreed.extensions) == (None, None)
    assert all(name != "Sec-WebSocket-Extensions" for name, _ in agreed.headers)


def test_deflate_off_ignores_offers():
    agreed = accept(request(sec_websocket_extensions="permessage-deflate"),
                    OPTIONS.replace(deflate=False))
    assert (agreed.deflate, agreed.extensions) == (None, None)


def test_subprotocol_the_app_names_is_chosen_if_offered():
    asked = []

    def app_protocol(path):
        asked.append(path)
        return "chat"

    agreed = accept(request(path="/room", sec_websocket_protocol="superchat, chat"), OPTIONS,
                    app_protocol=app_protocol)
    assert agreed.protocol == "chat" and asked == ["/room"]
    assert ("Sec-WebSocket-Protocol", "chat") in agreed.headers


@pytest.mark.parametrize("offered,app_protocol", [
    ("superchat", lambda path: "chat"),  # the app's choice was not offered
    ("chat", lambda path: None),  # the app speaks none
    ("chat", None),  # no app_protocol hook at all
])
def test_no_subprotocol_unless_both_sides_agree(offered, app_protocol):
    agreed = accept(request(sec_websocket_protocol=offered), OPTIONS, app_protocol=app_protocol)
    assert agreed.protocol is None
    assert all(name != "Sec-WebSocket-Protocol" for name, _ in agreed.headers)


def test_no_offer_never_asks_the_app():
    def app_protocol(path):
        raise AssertionError("asked without an offer")

    assert accept(request(), OPTIONS, app_protocol=app_protocol).protocol is None


def test_refusal_renders_as_a_closing_plain_text_response():
    raw = refusal_bytes(HandshakeRejected("429 Too Many Requests", "slow down",
                                          [("Retry-After", "5")]))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 429 Too Many Requests"
    assert set(lines[1:]) == {"Retry-After: 5", "Content-Type: text/plain; charset=utf-8",
                              "X-Content-Type-Options: nosniff", "Content-Length: 10",
                              "Connection: close"}
    assert body == b"slow down\n"


def test_response_keeps_a_content_type_and_replaces_the_length():
    raw = response_bytes("401 Unauthorized", [("Content-Type", "application/json"),
                                              ("Content-Length", "999")], b"{}")
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert "Content-Type: application/json" in head and "text/plain" not in head
    assert "Content-Length: 2" in head and "999" not in head




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
    # A port that is no port, or a broken IPv6 literal: a foreign Origin (403), not a 500.
    ("http://example.com:99999", "example.com:99999", [], False),
    ("http://example.com:abc", "example.com", [], False),
    ("http://example.com:-1", "example.com", [], False),
    ("http://[::1", "[::1]:5000", [], False),
])
def test_origin_rules(origin, host, allowed, ok):
    assert origin_allowed(origin, host, allowed) is ok


@pytest.mark.parametrize("origin,host,allowed,scheme,ok", [
    # Over TLS (or X-Forwarded-Proto: https) only https pages of the host are its own...
    ("https://example.com", "example.com", [], "https", True),
    ("http://example.com", "example.com", [], "https", False),
    ("http://example.com:443", "example.com", [], "https", False),
    # ...over plain http only http pages...
    ("http://example.com", "example.com", [], "http", True),
    ("https://example.com", "example.com", [], "http", False),
    # ...and an allowlist entry with a scheme matches that scheme only, its default port too.
    ("https://app.example", "example.com", ["https://app.example"], None, True),
    ("https://app.example:443", "example.com", ["https://app.example"], None, True),
    ("http://app.example", "example.com", ["https://app.example"], None, False),
    ("http://app.example", "example.com", ["https://app.example"], "http", False),
    # an entry without a scheme: that host (and port) under either scheme
    ("http://app.example", "example.com", ["app.example"], None, True),
    ("https://app.example", "example.com", ["app.example"], None, True),
    ("https://app.example:8443", "example.com", ["app.example"], None, False),
    ("chrome-extension://abc", "example.com", [], None, False),
])
def test_origin_scheme_rules(origin, host, allowed, scheme, ok):
    assert origin_allowed(origin, host, allowed, scheme) is ok


# -- over raw sockets, against a live server ------------------------------------------------


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
