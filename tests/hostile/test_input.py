"""Strict input against a real serve.py, in production mode (--api-key, --secret) and demo
mode (issue 12, findings 7-11, 13 and 14): every malformed value gets a clear error (an
`error` frame with its code, a 4xx with its JSON code) and never a traceback; nothing a
client sends can forge a log line; a poisoned job fails alone; a user's tokens can be
revoked; what lands on disk is private.

Each test reads the server's log from its own mark on (`fresh_log`) and ends with
`assert_clean`: no traceback was logged while it ran.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websocket
from realtime.helpers import Client, Closed
from wsclient import RawClient, connect, read_response, request

KEY = "hostile-key"
SECRET = "s" * 40
FORGED = "2026-01-01 00:00:00,000 ERROR wsapp.server: FORGED"


@pytest.fixture(scope="module")
def prod(start_module_server):
    """Production mode: the API needs the key, /ws needs a token."""
    server = start_module_server("--api-key", KEY, "--secret", SECRET, "--ping-interval", "0")
    server.record_baseline()
    return server


@pytest.fixture(scope="module")
def demo(start_module_server):
    """Demo mode: anyone mints any user's token."""
    server = start_module_server("--ping-interval", "0")
    server.record_baseline()
    return server


@pytest.fixture(autouse=True)
def fresh_log(request):
    """Each test answers for the tracebacks logged while it ran, not for earlier ones."""
    for name in ("prod", "demo"):
        if name in request.fixturenames:
            request.getfixturevalue(name).mark()


def api(server, method: str, path: str, body: bytes | str | None = None,
         headers: dict[str, str] | None = None, key: str | None = KEY) -> tuple[int, Any]:
    """(status, JSON body or raw bytes) of one request sent as given: raw bytes in headers
    (latin-1) and bodies that json.dumps would never write."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    data = body.encode("utf-8") if isinstance(body, str) else body
    sent = {"Content-Type": "application/json"} if data is not None else {}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    sent.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw


def mint(server, user: str, key: str | None = KEY) -> str:
    status, body = api(server, "POST", "/api/tokens", json.dumps({"user": user}), key=key)
    assert status == 200, body
    return body["token"]


def join(server, user: str | None = None, token: str | None = None) -> Client:
    """A /ws connection speaking the JSON protocol (with `user`'s fresh token)."""
    if user is not None:
        token = mint(server, user)
    query = f"?token={token}" if token else ""
    return Client(websocket.create_connection(server.url(f"/ws{query}"), timeout=10))


def strict(text: str | bytes) -> Any:
    """A JSON document parsed as browsers' JSON.parse does: no NaN, no Infinity."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} in a frame")
    return json.loads(text, parse_constant=refuse)


def error_of(client: Client, frame: str) -> dict:
    """The `error` frame answering one raw text frame."""
    client.send_text(frame)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        client.ws.settimeout(10)
        reply = strict(client.ws.recv())
        if reply.get("op") in ("error", "ok", "pong"):
            return reply
    raise AssertionError("no reply")


# -- 7: whole-string patterns ------------------------------------------------------------------

@pytest.mark.parametrize("channel", ["room:lobby\n", "room:lobby\r\n", "room:lob\nby",
                                     "user:ann\n"])
def test_a_channel_with_a_trailing_newline_is_no_channel(prod, channel):
    client = join(prod, "ann")
    try:
        reply = client.request("subscribe", channel=channel)
        assert reply["op"] == "error" and reply["code"] == "bad_channel", reply
    finally:
        client.close()
    status, body = api(prod, "POST", "/api/publish",
                        json.dumps({"channel": channel, "data": 1}))
    assert (status, body["error"]) == (400, "bad_channel")
    prod.assert_clean()


@pytest.mark.parametrize("path", ["/api/users/ann%0A/messages", "/api/users/ann%0A/revoke",
                                  "/api/users/ann%0D%0A/messages"])
def test_a_user_id_with_a_newline_is_refused_everywhere(prod, path):
    method = "POST" if path.endswith("revoke") else "GET"
    status, body = api(prod, method, path)
    assert status == 400 and body["error"] == "bad_request", body
    status, body = api(prod, "POST", "/api/push", json.dumps({"user": "ann\n", "data": 1}))
    assert (status, body["error"]) == (400, "bad_request")
    prod.assert_clean()


def test_redis_refuses_a_trailing_newline_channel_and_keeps_offsets_apart(start_server,
                                                                            redis_server):
    """With Redis as store and broker (where the bus once split on the first newline, so
    the message reached room:lobby with another counter's offset)."""
    url = redis_server.url("hostile-nl")
    server = start_server("--api-key", KEY, "--secret", SECRET, "--store", url,
                          "--broker", url, "--ping-interval", "0")
    listener = join(server, "ann")
    try:
        listener.ok("subscribe", channel="room:lobby")
        for channel in ("room:lobby\n", "room:lobby\nx"):
            reply = listener.request("publish", channel=channel, data="evil")
            assert reply["code"] == "bad_channel", reply
            status, body = api(server, "POST", "/api/publish",
                                json.dumps({"channel": channel, "data": "evil"}))
            assert (status, body["error"]) == (400, "bad_channel")
        first = api(server, "POST", "/api/publish",
                     json.dumps({"channel": "room:lobby", "data": "real"}))[1]
        got = listener.wait_for(lambda f: f.get("op") == "message")
        assert (got["channel"], got["data"], got["offset"]) == ("room:lobby", "real",
                                                                first["offset"])
        assert first["offset"] == 1  # nothing else was numbered on room:lobby's counter
    finally:
        listener.close()
    server.record_baseline()
    server.assert_clean()


# -- 8: log fields escaped ---------------------------------------------------------------------

def forged_lines(server) -> list[str]:
    """Log lines that start with what a client tried to forge."""
    return [line for line in server.log().splitlines() if line.startswith(FORGED[:30])
            or "\x1b" in line]


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/nothere", "/api/x"])
def test_a_path_cannot_write_a_log_line(prod, path):
    encoded = FORGED.replace(" ", "%20")
    with connect(prod.port) as sock:
        sock.sendall(request(prod.port, f"{path}%0A{encoded}"))
        assert read_response(sock).status in (101, 400, 404)
    with connect(prod.port) as sock:  # and a raw ESC: a terminal would obey it
        sock.sendall(request(prod.port, f"{path}\x1b[2J"))
        read_response(sock)
    time.sleep(0.3)  # log lines are written by a greenlet soon after
    assert forged_lines(prod) == [], prod.log()[-2000:]
    assert "%0A" in prod.log() or "\\n" in prod.log()
    prod.assert_clean()


def test_a_close_reason_is_escaped_in_the_close_line(prod):
    with RawClient.open(prod.port, "/ws/echo") as client:
        client.send_close(1000, ("bye\n" + FORGED).encode())
        client.expect_close()
    line = prod.wait_for_log(r"close \S+ /ws/echo .*bye\\n2026-01-01 ", 5).group(0)
    assert "\n" not in line
    assert forged_lines(prod) == [], prod.log()[-2000:]
    prod.assert_clean()


# -- 9: never a traceback ----------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["http://127.0.0.1:99999", "http://127.0.0.1:abc",
                                    "http://[::1", "http://127.0.0.1:-1"])
def test_an_origin_with_a_bad_port_is_refused_with_403(prod, origin):
    with connect(prod.port) as sock:
        sock.sendall(request(prod.port, "/ws/echo", headers={"Origin": origin}))
        resp = read_response(sock)
    assert resp.status == 403, resp
    prod.assert_clean()


def test_a_non_ascii_api_key_or_token_is_refused_not_crashed(prod):
    for header in ("Bearer \xe9t\xe9", "Bearer \xff\xfe", "B\xe9arer x"):
        for method, path in (("GET", "/api/history?channel=room:a"), ("GET", "/metrics"),
                             ("POST", "/api/tokens")):
            status, body = api(prod, method, path, "{}" if method == "POST" else None,
                                headers={"Authorization": header}, key=None)
            assert status == 401, (header, path, status, body)
    for token in ("%C3%A9%C3%A9", "%ED%A0%80", "%FF", "a.%E2%80%A8.b"):
        ws = websocket.create_connection(prod.url(f"/ws?token={token}"), timeout=10)
        with pytest.raises(Closed) as closed:
            Client(ws)
        assert closed.value.code == 4401, closed.value
    prod.assert_clean()


@pytest.mark.parametrize("target", [b"/ws?token=x&n=\xff", b"/api/history?channel=room:\xe9",
                                    b"/ws/echo\x85", b"/api/x\x7f", b"/ws\x1b[2J"])
def test_a_raw_byte_in_the_request_target_is_a_400(prod, target):
    """RFC 3986 targets are printable ASCII: a raw byte over 0x7f (werkzeug failed to decode
    it: a 500 with a traceback) or a control byte is refused before any app sees it."""
    with connect(prod.port) as sock:
        sock.sendall(request(prod.port).replace(b"GET /ws/echo ", b"GET " + target + b" ", 1))
        assert read_response(sock).status == 400
    with connect(prod.port) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n")
        assert read_response(sock).status == 400
    prod.assert_clean()


def test_a_body_cut_before_its_content_length_is_no_traceback(prod):
    with connect(prod.port) as sock:
        sock.sendall(b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                     b'{"channel":')
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
    prod.assert_clean()


@pytest.mark.parametrize("since", [2**63, 2**64, -1, 2**62 + 1])
def test_since_out_of_range_is_a_clear_error(prod, since):
    client = join(prod, "ann")
    try:
        reply = error_of(client, f'{{"op":"subscribe","channel":"room:a","since":{since},'
                                 f'"id":1}}')
        assert reply["code"] == "bad_request" and "since" in reply["reason"], reply
    finally:
        client.close()
    status, body = api(prod, "GET", f"/api/history?channel=room:a&since={since}")
    assert status == 400 and body["error"] == "bad_request", body
    prod.assert_clean()


@pytest.mark.parametrize("ttl", ["Infinity", "-Infinity", "NaN", "1e300", "1e999", "0", "-5"])
def test_a_push_ttl_out_of_range_is_a_clear_error(prod, ttl):
    status, body = api(prod, "POST", "/api/push", f'{{"user":"ann","data":1,"ttl":{ttl}}}')
    assert status == 400 and body["error"] in ("bad_request", "bad_json"), body
    assert "ttl" in body["reason"] or "JSON" in body["reason"], body
    prod.assert_clean()


@pytest.mark.parametrize("field", ["data", "category", "key", "user"])
def test_a_lone_surrogate_is_a_clear_error(prod, field):
    fields = {"user": '"ann"', "data": "1", field: '"x\\ud800y"'}
    body_text = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
    status, body = api(prod, "POST", "/api/push", body_text)
    assert status == 400 and body["error"] == "bad_json", body
    assert "surrogate" in body["reason"], body
    client = join(prod, "ann")
    try:
        reply = error_of(client, '{"op":"publish","channel":"room:a","data":"\\udc00","id":1}')
        assert reply["code"] == "bad_json" and "surrogate" in reply["reason"], reply
    finally:
        client.close()
    prod.assert_clean()


# -- 10: one bad job never fails another's -----------------------------------------------------

POISONED = {i for i in range(100) if i % 25 == 7}  # 4 of 100


def push_100(server, user: str, category: Callable[[int], str]) -> dict[int, int]:
    """Push 100 messages to `user` from 20 threads at once (so they share store batches),
    push i in category(i) (a JSON text); the status of each."""
    results: dict[int, int] = {}
    start = threading.Barrier(20)

    def send(worker: int) -> None:
        start.wait(10)
        for i in range(worker, 100, 20):
            results[i] = api(server, "POST", "/api/push",
                             f'{{"user":"{user}","data":{i},"category":{category(i)}}}')[0]

    threads = [threading.Thread(target=send, args=(w,)) for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    innocent = {i: s for i, s in results.items() if i not in POISONED}
    assert innocent == {i: 200 for i in range(100) if i not in POISONED}
    status, body = api(server, "GET", f"/api/users/{user}/messages?limit=1000")
    assert status == 200
    assert sorted(m["data"] for m in body["messages"]) == sorted(set(range(100)) - POISONED)
    return results


def test_poisoned_pushes_fail_alone_among_concurrent_innocent_ones(prod):
    """100 concurrent pushes to one user, 4 of them with a lone surrogate in `category`:
    the 4 get 400 (refused before any batch) and the 96 are stored."""
    results = push_100(prod, "poisoned",
                       lambda i: '"cat\\ud800"' if i in POISONED else '"news"')
    assert {i: results[i] for i in POISONED} == dict.fromkeys(POISONED, 400)
    prod.assert_clean()


def test_a_job_the_store_refuses_fails_alone_in_its_batch(start_server):
    """The batch writer itself: a store that refuses a push (here: category "poison", which
    validation lets through) rolls back the batch it is in; the innocent jobs of that batch
    are stored anyway, one at a time, and only the poisoned callers get an error."""
    server = start_server("--api-key", KEY, "--secret", SECRET,
                          script=Path(__file__).resolve().parent.parent / "apps" /
                          "poison_store.py")
    results = push_100(server, "victim", lambda i: '"poison"' if i in POISONED else '"news"')
    assert all(results[i] >= 500 for i in POISONED), results


# -- 11: strict JSON everywhere ----------------------------------------------------------------

@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_json_numbers_are_refused_and_never_reach_a_subscriber(prod, number):
    watcher = join(prod, "wes")
    sender = join(prod, "sam")
    try:
        watcher.ok("subscribe", channel="room:strict")
        for frame in (f'{{"op":"publish","channel":"room:strict","data":{number},"id":1}}',
                      f'{{"op":"publish","channel":"room:strict","data":[{number}],"id":2}}',
                      f'{{"op":"ping","t":{number},"id":3}}',
                      f'{{"op":"ping","id":{number}}}'):
            reply = error_of(sender, frame)
            assert reply["op"] == "error" and reply["code"] == "bad_json", (frame, reply)
            assert "JSON" in reply["reason"], reply
        status, body = api(prod, "POST", "/api/publish",
                            f'{{"channel":"room:strict","data":{{"x":{number}}}}}')
        assert (status, body["error"]) == (400, "bad_json")
        sender.ok("publish", channel="room:strict", data="fine")
        watcher.ws.settimeout(10)
        first = strict(watcher.ws.recv())  # the first message is the good one, parsed strictly
        assert first["op"] == "message" and first["data"] == "fine", first
    finally:
        watcher.close()
        sender.close()
    prod.assert_clean()


# -- 13: revocation ----------------------------------------------------------------------------

def test_revoked_tokens_are_refused_and_live_connections_closed(prod):
    token = mint(prod, "rita")
    live = join(prod, token=token)
    other = join(prod, "otto")  # another user is not touched
    try:
        live.ok("subscribe", channel="room:r")
        status, body = api(prod, "POST", "/api/users/rita/revoke")
        assert (status, body) == (200, {"user": "rita", "revoked": True})
        with pytest.raises(Closed) as closed:
            for _ in range(100):  # bounded: the close comes after at most a few frames
                live.recv(10)
        assert closed.value.code == 4401 and "revoked" in closed.value.reason
        ws = websocket.create_connection(prod.url(f"/ws?token={token}"), timeout=10)
        with pytest.raises(Closed) as again:
            Client(ws)
        assert again.value.code == 4401 and "revoked" in again.value.reason
        assert other.request("ping")["op"] == "pong"
        # the revocation needs the key (as JSON: without either, a write is a 415)
        assert api(prod, "POST", "/api/users/otto/revoke", key=None,
                   headers={"Content-Type": "application/json"})[0] == 401
        time.sleep(1.1)  # a token issued after the revocation (iat counts whole seconds) works
        fresh = join(prod, "rita")
        assert fresh.welcome["user"] == "rita"
        fresh.close()
    finally:
        live.abort()
        other.close()
    prod.assert_clean()


# -- 14: private files -------------------------------------------------------------------------

def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}


def test_the_data_dir_and_database_are_private_even_when_made_loose(start_server, tmp_path):
    """A data dir an older version (or a loose umask) left 0755, with a 0644 database, WAL
    and secret: tightened at start; a fresh one is made private."""
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    first = start_server(env={"WSAPP_DATA_DIR": str(loose)})
    api(first, "POST", "/api/publish", json.dumps({"channel": "room:a", "data": 1}), key=None)
    first.stop()
    for path in [loose, *loose.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (loose / "wsapp.db-wal").write_bytes(b"")
    (loose / "wsapp.db-wal").chmod(0o644)
    server = start_server(env={"WSAPP_DATA_DIR": str(loose)})
    api(server, "POST", "/api/publish", json.dumps({"channel": "room:a", "data": 2}), key=None)
    got = modes(loose)
    assert got.pop("loose") == 0o700, got
    assert set(got) >= {"wsapp.db", "secret"}
    assert all(mode == 0o600 for mode in got.values()), {k: oct(v) for k, v in got.items()}
    fresh = tmp_path / "fresh" / "data"
    other = start_server(env={"WSAPP_DATA_DIR": str(fresh)})
    api(other, "POST", "/api/publish", json.dumps({"channel": "room:a", "data": 3}), key=None)
    got = modes(fresh)
    assert got.pop("data") == 0o700
    assert all(mode == 0o600 for mode in got.values()), {k: oct(v) for k, v in got.items()}


# -- the log holds no traceback from any of the above ------------------------------------------

def test_no_client_wrote_a_traceback(prod, demo):
    for server in (prod, demo):
        assert "Traceback" not in server.log(), server.log()[-4000:]
        assert not re.search(r'"[A-Z]+ /api/\S* HTTP/1\.1" 5\d\d ', server.log())
