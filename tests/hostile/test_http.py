"""Hostile HTTP clients against a real serve.py (issue 12, findings 3-6, 12, 13, 15): every
limit holds before any app code runs, and answers with the right status.

- /metrics needs the API key in production and never names a private channel;
- request bodies are bounded, chunked ones too: 413 before reading past the limit, so
  neither memory nor the time spent reading grows with what a client sends;
- a body that trickles is cut at --body-timeout, and plain HTTP connections count against
  --max-connections and --max-connections-per-ip;
- a foreign Host (DNS rebinding) gets 421, upgrade or not; demo mode refuses to listen beyond
  loopback without --public-demo and says DEMO MODE at start;
- API writes need JSON or an Authorization header (415): no cross-site form can post;
- credentials in a query never reach the access log;
- the Origin check compares schemes; every response carries nosniff; the pages' CSP lets
  them connect to their own host only.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import websocket
from httpcall import call
from serverproc import SERVE, clean_env, free_port
from wsclient import connect, handshake, read_response

API_KEY = "k" * 24
SECRET = "s" * 32
BODY_TIMEOUT = 1.0
HUGE = 300 * 1024 * 1024  # what the review sent
CHUNK = 64 * 1024
# What a refused body may still cost: the limit (1 MiB) plus socket buffers on both sides.
MOST_ACCEPTED = 16 * 1024 * 1024
MOST_RSS_GROWTH_KB = 40 * 1024


@pytest.fixture(scope="module")
def demo(start_module_server):
    """Demo mode, default limits."""
    return start_module_server("--ping-interval", "0")


@pytest.fixture(scope="module")
def prod(start_module_server):
    """Production mode: an API key and a token secret."""
    return start_module_server("--api-key", API_KEY, "--secret", SECRET, "--ping-interval", "0")


def exchange(port: int, raw: bytes, timeout: float = 5.0, source: str = "127.0.0.1"):
    """Send one raw HTTP request on a fresh connection; the response."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))
    try:
        sock.sendall(raw)
        return read_response(sock, timeout)
    finally:
        sock.close()


def http(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request that closes its connection."""
    fields = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body or method != "GET":
        fields.setdefault("Content-Length", str(len(body)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return (head + "\r\n").encode("latin-1") + body


def mint(port: int, user: str) -> str:
    status, body = call(f"http://127.0.0.1:{port}/api/tokens", "POST", {"user": user})
    assert status == 200, body
    return body["token"]


# -- 3. /metrics ---------------------------------------------------------------------------

def test_metrics_need_the_api_key_in_production(prod, demo):
    url = f"http://127.0.0.1:{prod.port}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
        assert refused.value.code == 401
    keyed = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(keyed, timeout=5) as resp:
        assert resp.status == 200 and b"wsapp_connections" in resp.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{demo.port}/metrics", timeout=5) as resp:
        assert resp.status == 200  # demo mode: anyone may read anything anyway


def test_metrics_never_name_a_private_channel(demo):
    """user:<id> and a hook-guarded board (tasks:<owner>) are summed as 'private'; a room,
    which any signed-in user may join, is named."""
    user = f"victim{time.monotonic_ns()}"
    ws = websocket.create_connection(f"ws://127.0.0.1:{demo.port}/ws?token={mint(demo.port, user)}",
                                     timeout=5)
    try:
        json.loads(ws.recv())  # welcome
        channels = [f"user:{user}", f"tasks:{user}", f"room:open{user}"]
        for n, channel in enumerate(channels):
            ws.send(json.dumps({"op": "subscribe", "id": n, "channel": channel}))
            while (reply := json.loads(ws.recv())).get("id") != n:
                pass
            assert reply["op"] == "ok", reply
        with urllib.request.urlopen(f"http://127.0.0.1:{demo.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        ws.close()
    assert f'channel="room:open{user}"' in text
    assert f"user:{user}" not in text and f"tasks:{user}" not in text, text
    private = re.search(r'wsapp_channel_subscribers\{channel="private"\} (\S+)', text)
    assert private and float(private.group(1)) >= 2, text


# -- 4. bounded bodies ---------------------------------------------------------------------

def send_until_refused(port: int, head: bytes, chunks, limit: int = HUGE) -> tuple[int, int]:
    """Send `head`, then `chunks` (bytes) until `limit` bytes went out or the server stopped
    taking them; (bytes the server took, the response's status)."""
    sock = connect(port, timeout=5)
    sent = 0
    try:
        sock.sendall(head)
        for chunk in chunks:
            if sent >= limit:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # refused and closed: what we sent since is not taken
                break
            sent += len(chunk)
        try:
            status = read_response(sock, timeout=10).status
        except (OSError, EOFError) as exc:
            pytest.fail(f"no answer after {sent} bytes: {exc!r}")
        return sent, status
    finally:
        sock.close()


def zeros(total: int = HUGE):
    block = bytes(CHUNK)
    for _ in range(total // CHUNK):
        yield block


def chunked(total: int = HUGE):
    block = b"%x\r\n" % CHUNK + bytes(CHUNK) + b"\r\n"
    for _ in range(total // CHUNK):
        yield block


@pytest.mark.parametrize("path", ["/", "/api/publish", "/api/tasks"])
def test_a_declared_300_mb_body_is_refused_unread(demo, path):
    rss = demo.status_kb("VmRSS")
    head = http(demo.port, "POST", path, {"Content-Type": "application/json",
                                          "Content-Length": str(HUGE)})
    sent, status = send_until_refused(demo.port, head, zeros())
    assert status == 413
    assert sent < MOST_ACCEPTED, f"the server read {sent >> 20} MiB of a refused body"
    assert demo.status_kb("VmRSS") - rss < MOST_RSS_GROWTH_KB


@pytest.mark.parametrize("path", ["/", "/api/publish"])
def test_a_chunked_body_is_refused_past_the_limit_unread(demo, path):
    rss = demo.status_kb("VmRSS")
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{demo.port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    sent, status = send_until_refused(demo.port, head, chunked())
    assert status == 413
    assert sent < MOST_ACCEPTED, f"the server read {sent >> 20} MiB of a refused body"
    assert demo.status_kb("VmRSS") - rss < MOST_RSS_GROWTH_KB


def test_a_chunked_body_within_the_limit_reaches_the_app(demo):
    body = json.dumps({"channel": "room:chunked", "data": "x" * 50_000}).encode()
    parts = [body[i:i + 7000] for i in range(0, len(body), 7000)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = (f"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:{demo.port}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    resp = exchange(demo.port, head + wire)
    assert resp.status == 200, resp
    assert json.loads(resp.body)["channel"] == "room:chunked"


# -- 5. body timeout, connections counted --------------------------------------------------

def test_slow_bodies_are_cut_at_the_body_timeout(start_server):
    srv = start_server("--body-timeout", str(BODY_TIMEOUT), "--ping-interval", "0")
    baseline = srv.socket_count()
    n = 200
    socks = []
    try:
        for _ in range(n):
            sock = connect(srv.port, timeout=10)
            sock.sendall(http(srv.port, "POST", "/api/publish",
                              {"Content-Type": "application/json", "Content-Length": "1000"},
                              b'{"channel": '))  # ...and the rest never comes
            socks.append(sock)
        deadline = time.monotonic() + 5
        while srv.socket_count() < baseline + n // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        statuses = [read_response(sock, timeout=BODY_TIMEOUT + 5).status for sock in socks]
        assert set(statuses) == {408}, set(statuses)
        assert time.monotonic() - started < BODY_TIMEOUT + 5
        deadline = time.monotonic() + 5
        while srv.socket_count() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.socket_count() <= baseline, "the slow connections' descriptors stay open"
    finally:
        for sock in socks:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed(start_server):
    """Between requests a connection may idle for handshake_timeout, no longer."""
    srv = start_server("--handshake-timeout", "1", "--ping-interval", "0")
    sock = connect(srv.port, timeout=10)
    try:
        sock.sendall(http(srv.port, "GET", "/healthz", {"Connection": "keep-alive"}))
        assert read_response(sock).status == 200
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server...
        assert time.monotonic() - started < 3  # ...after about a second
    finally:
        sock.close()


def test_http_connections_count_against_the_connection_caps(start_server):
    srv = start_server("--max-connections", "8", "--max-connections-per-ip", "4",
                       "--ping-interval", "0", "--handshake-timeout", "30")
    healthz = http(srv.port, "GET", "/healthz")
    idle = []
    try:
        for _ in range(4):  # idle HTTP connections: not a byte sent
            idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        time.sleep(0.3)
        assert exchange(srv.port, healthz).status == 429  # this address holds its 4
        for _ in range(4):
            idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5,
                                                 source_address=("127.0.0.2", 0)))
        time.sleep(0.3)
        full = exchange(srv.port, healthz, source="127.0.0.3")
        assert full.status == 503 and full.headers.get("retry-after") == "5"
        _, upgrade = handshake(srv.port, headers={"Host": f"127.0.0.1:{srv.port}"})
        assert upgrade.status in (429, 503)
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while exchange(srv.port, healthz).status != 200:
        assert time.monotonic() < deadline, "the closed connections are still counted"
        time.sleep(0.1)


# -- 6. Host allowlist, demo mode ----------------------------------------------------------

def test_a_foreign_host_is_refused_before_any_app_code(demo):
    """DNS rebinding: a page on rebind.example, now resolving to 127.0.0.1, cannot use the
    server: not the API (no token minted), not a WebSocket."""
    port = demo.port
    evil = f"rebind.example:{port}"
    assert exchange(port, http(port, "GET", "/api/config", {"Host": evil})).status == 421
    mint_req = http(port, "POST", "/api/tokens", {"Host": evil, "Content-Type": "application/json"},
                    b'{"user": "alice"}')
    refused = exchange(port, mint_req)
    assert refused.status == 421 and b"token" not in refused.body
    _, upgrade = handshake(port, "/ws", headers={"Host": evil, "Origin": f"http://{evil}"})
    assert upgrade.status == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"app.localhost:{port}"):
        assert exchange(port, http(port, "GET", "/api/config", {"Host": host})).status == 200


def test_allowed_hosts_names_the_hosts_served(start_server):
    srv = start_server("--allowed-hosts", "push.example.com,.apps.example", "--ping-interval", "0")
    port = srv.port
    for host, status in (("push.example.com", 200), (f"push.example.com:{port}", 200),
                         ("a.apps.example", 200), ("127.0.0.1", 421),
                         ("push.example.com.evil.example", 421)):
        assert exchange(port, http(port, "GET", "/healthz", {"Host": host})).status == status, host


def test_demo_mode_refuses_a_network_address_without_public_demo(tmp_path):
    argv = [sys.executable, str(SERVE), "--host", "0.0.0.0", "--port", str(free_port()),
            "--data-dir", str(tmp_path)]
    result = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "demo mode" in result.stderr and "--public-demo" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # the line + "--help"


def test_demo_mode_says_so_loudly_at_start(demo):
    assert re.search(r"WARNING wsapp\.server: DEMO MODE: .*anyone", demo.log()), demo.log()


# -- 12. no cross-site form can write ------------------------------------------------------

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain")


@pytest.mark.parametrize("content_type", FORMS)
def test_api_writes_refuse_what_a_form_can_send(demo, content_type):
    port = demo.port
    for path, body in (("/api/users/alice/revoke", b""),
                       ("/api/publish", b'{"channel": "room:csrf", "data": 1}'),
                       ("/api/tokens", b'{"user": "alice"}')):
        resp = exchange(port, http(port, "POST", path, {"Content-Type": content_type}, body))
        assert resp.status == 415, (path, resp)
        assert json.loads(resp.body)["error"] == "unsupported_media_type"


def test_api_writes_with_json_or_credentials_pass(demo, prod):
    resp = exchange(demo.port, http(demo.port, "POST", "/api/users/bob/revoke",
                                    {"Content-Type": "application/json"}))
    assert resp.status == 200, resp
    resp = exchange(prod.port, http(prod.port, "POST", "/api/users/bob/revoke",
                                    {"Authorization": f"Bearer {API_KEY}"}))
    assert resp.status == 200, resp


# -- 13. credentials never logged ----------------------------------------------------------

def test_credentials_in_a_query_are_redacted_in_the_access_log(demo):
    secrets = ("tok3nS3cret", "k3yS3cret", "acc3ssS3cret")
    port = demo.port
    exchange(port, http(port, "GET", f"/ws?token={secrets[0]}&x=1"))  # no Upgrade header
    exchange(port, http(port, "GET", f"/api/config?api_key={secrets[1]}"))
    exchange(port, http(port, "GET", f"/nowhere?a=b&access_token={secrets[2]}"))
    demo.wait_for_log(r'"GET /nowhere\?a=b&access_token=\*\*\* HTTP/1\.1" 404')
    log = demo.log()
    assert '"GET /ws?token=***&x=1 HTTP/1.1" 400' in log
    assert '"GET /api/config?api_key=*** HTTP/1.1" 200' in log
    for secret in secrets:
        assert secret not in log


# -- 15. Origin with its scheme, nosniff, CSP ---------------------------------------------

def test_the_origin_check_compares_schemes(demo, start_server):
    port = demo.port
    own = f"127.0.0.1:{port}"
    # Behind a TLS proxy (X-Forwarded-Proto: https) an http page of the same host is refused.
    for origin, status in ((f"http://{own}", 403), (f"https://{own}", 101)):
        sock, resp = handshake(port, "/ws/echo", headers={"Origin": origin,
                                                           "X-Forwarded-Proto": "https"})
        sock.close()
        assert resp.status == status, origin
    sock, resp = handshake(port, "/ws/echo", headers={"Origin": f"https://{own}",
                                                       "X-Forwarded-Proto": "http"})
    sock.close()
    assert resp.status == 403
    listed = start_server("--allowed-origins", "https://app.example", "--ping-interval", "0")
    for origin, status in (("https://app.example", 101), ("http://app.example", 403)):
        sock, resp = handshake(listed.port, "/ws/echo", headers={"Origin": origin})
        sock.close()
        assert resp.status == status, origin


@pytest.mark.parametrize("path", ["/", "/api/config", "/wsapp.js", "/metrics", "/healthz",
                                  "/nowhere", "/api/nowhere", "/demo/static/page.js"])
def test_every_response_says_nosniff(demo, path):
    resp = exchange(demo.port, http(demo.port, "GET", path))
    assert resp.headers.get("x-content-type-options") == "nosniff", (path, resp.headers)


def test_refusals_say_nosniff_too(demo):
    port = demo.port
    foreign = exchange(port, http(port, "GET", "/", {"Host": "rebind.example"}))
    _, bad_upgrade = handshake(port, "/ws/echo", omit=("Sec-WebSocket-Key",))
    for resp in (foreign, bad_upgrade):
        assert resp.headers.get("x-content-type-options") == "nosniff", resp


def test_the_pages_may_connect_to_their_own_host_only(demo):
    resp = exchange(demo.port, http(demo.port, "GET", "/chat"))
    csp = resp.headers["content-security-policy"]
    sources = re.search(r"connect-src ([^;]*)", csp).group(1).split()
    assert sources == ["'self'"], csp
