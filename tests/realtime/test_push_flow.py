"""Per-user delivery against a real server: push, ack, redelivery, crash, recovery, quotas, API."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpcall as http
import pytest
import websocket

KEY = "test-key"


@pytest.fixture(scope="module")
def srv(start_module_server, tmp_path_factory):
    """One server for the module; each test uses its own user ids and channels."""
    return start_module_server("--data-dir", str(tmp_path_factory.mktemp("data")),
                               "--api-key", KEY, "--quota", "promo=2/day",
                               "--quota", "total=4/day")


def api(server, method, path, body=None, key=KEY, raw=None):
    return http.call(f"http://127.0.0.1:{server.port}{path}", method, body, key, raw)


def connect(server, user):
    _, body = api(server, "POST", "/api/tokens", {"user": user})
    ws = websocket.create_connection(f"{server.url('/ws')}?token={body['token']}", timeout=10)
    welcome = json.loads(ws.recv())
    assert welcome["op"] == "welcome" and welcome["user"] == user
    return ws


def recv_until(ws, pred, timeout=10):
    """Frames until one matches `pred` (returned with everything before it)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        frame = json.loads(ws.recv())
        seen.append(frame)
        if pred(frame):
            return seen
    raise AssertionError(f"no matching frame in {timeout}s; saw {seen}")


def status_of(server, user, msg):
    _, body = api(server, "GET", f"/api/users/{user}/messages")
    return {r["msg"]: r for r in body["messages"]}[msg]


def test_offline_push_is_delivered_on_connect_and_acked(srv):
    code, pushed = api(srv, "POST", "/api/push", {"user": "ann", "data": {"n": 1}})
    assert code == 200 and pushed["status"] == "stored"
    assert status_of(srv, "ann", pushed["msg"])["status"] == "pending"
    ws = connect(srv, "ann")
    got = recv_until(ws, lambda f: f.get("msg") == pushed["msg"])[-1]
    assert got["channel"] == "user:ann" and got["data"] == {"n": 1}
    deadline = time.monotonic() + 5
    while status_of(srv, "ann", pushed["msg"])["status"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ws.send(json.dumps({"op": "ack", "msg": pushed["msg"], "id": 1}))
    reply = recv_until(ws, lambda f: f.get("id") == 1)[-1]
    assert reply == {"op": "ok", "id": 1, "msg": pushed["msg"], "status": "acked"}
    record = status_of(srv, "ann", pushed["msg"])
    assert record["status"] == "acked" and record["acked"] >= record["delivered"]
    # an acked message is not delivered again
    ws.close()
    ws = connect(srv, "ann")
    ws.send(json.dumps({"op": "ping", "id": 2}))
    frames = recv_until(ws, lambda f: f.get("op") == "pong")
    assert not [f for f in frames if f.get("op") == "message"]


def test_online_push_is_delivered_and_unacked_is_delivered_again(srv):
    ws = connect(srv, "bo")
    code, pushed = api(srv, "POST", "/api/push", {"user": "bo", "data": "hello"})
    assert code == 200 and pushed["status"] == "delivered"
    assert recv_until(ws, lambda f: f.get("op") == "message")[-1]["msg"] == pushed["msg"]
    ws.close()  # no ack
    ws = connect(srv, "bo")
    again = recv_until(ws, lambda f: f.get("op") == "message")[-1]
    assert again["msg"] == pushed["msg"] and again["offset"] == pushed["offset"]
    deadline = time.monotonic() + 5
    while status_of(srv, "bo", pushed["msg"])["attempts"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # a second tab of the same user gets it too (any tab may ack)
    tab2 = connect(srv, "bo")
    assert recv_until(tab2, lambda f: f.get("op") == "message")[-1]["msg"] == pushed["msg"]
    tab2.send(json.dumps({"op": "ack", "msg": pushed["msg"], "id": 5}))
    assert recv_until(tab2, lambda f: f.get("id") == 5)[-1]["status"] == "acked"


def test_ack_of_someone_elses_message_is_refused(srv):
    _, pushed = api(srv, "POST", "/api/push", {"user": "cy", "data": 1})
    ws = connect(srv, "dee")
    ws.send(json.dumps({"op": "ack", "msg": pushed["msg"], "id": 3}))
    reply = recv_until(ws, lambda f: f.get("id") == 3)[-1]
    assert reply["op"] == "error" and reply["code"] == "not_found"
    assert status_of(srv, "cy", pushed["msg"])["status"] == "pending"


def test_pending_messages_survive_kill_9(start_server, tmp_path):
    args = ("--data-dir", str(tmp_path / "crash"), "--api-key", KEY)
    first = start_server(*args)
    sent = [api(first, "POST", "/api/push", {"user": "eve", "data": {"i": i}})[1]["msg"]
            for i in range(5)]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    second = start_server(*args)
    ws = connect(second, "eve")
    frames = recv_until(ws, lambda f: f.get("msg") == sent[-1])
    assert [f["msg"] for f in frames if f.get("op") == "message"] == sent


def read_messages(ws, n, timeout=30):
    """Offsets of the next `n` message frames (other frames are skipped)."""
    frames = []
    recv_until(ws, lambda f: f.get("op") == "message" and frames.append(f) is None
               and len(frames) >= n, timeout)
    return [f["offset"] for f in frames]


def test_recovery_seam_under_concurrent_publishing(srv):
    total = 300
    failures = []

    def publisher():
        for i in range(total):
            code, _ = api(srv, "POST", "/api/publish", {"channel": "room:seam", "data": i})
            if code != 200:
                failures.append(code)

    ws = connect(srv, "fay")
    ws.send(json.dumps({"op": "subscribe", "channel": "room:seam", "id": 1}))
    recv_until(ws, lambda f: f.get("id") == 1)
    pub = threading.Thread(target=publisher)
    pub.start()
    offsets: list[int] = []
    try:
        for rnd in range(4):  # read some, drop the connection, resume from the last offset
            offsets += read_messages(ws, 20)
            ws.close()
            ws = connect(srv, "fay")
            ws.send(json.dumps({"op": "subscribe", "channel": "room:seam",
                                "since": offsets[-1], "id": 10 + rnd}))
            frames = recv_until(ws, lambda f, r=rnd: f.get("id") == 10 + r)
            offsets += [f["offset"] for f in frames if f.get("op") == "message"]
        offsets += read_messages(ws, total - len(offsets))
    finally:
        pub.join(60)
    assert not failures
    assert offsets == list(range(1, total + 1))  # no gap, no duplicate, in order


def test_history_lost_is_said_explicitly(start_server, tmp_path):
    srv = start_server("--data-dir", str(tmp_path / "h"), "--history-size", "5")
    for i in range(12):
        api(srv, "POST", "/api/publish", {"channel": "room:short", "data": i})
    ws = connect(srv, "gil")
    ws.send(json.dumps({"op": "subscribe", "channel": "room:short", "since": 2, "id": 1}))
    frames = recv_until(ws, lambda f: f.get("id") == 1)
    reply = frames[-1]
    assert reply["history_lost"] is True and reply["first_offset"] == 8
    assert [f["offset"] for f in frames if f.get("op") == "message"] == [8, 9, 10, 11, 12]
    code, body = api(srv, "GET", "/api/history?channel=room:short&since=0&limit=3")
    assert code == 200 and [m["offset"] for m in body["messages"]] == [8, 9, 10]


def test_fatigue_caps_per_category_and_total(srv):
    def push(category=None):
        body = {"user": "hal", "data": "x"}
        if category:
            body["category"] = category
        return api(srv, "POST", "/api/push", body)

    assert push("promo")[0] == 200 and push("promo")[0] == 200
    code, body = push("promo")
    assert code == 429 and body["status"] == "suppressed" and "promo=2/day" in body["reason"]
    assert push()[0] == 200 and push("news")[0] == 200  # 4 pushes counted: total cap reached
    code, body = push("news")
    assert code == 429 and "total=4/day" in body["reason"]
    _, records = api(srv, "GET", "/api/users/hal/messages?status=suppressed")
    assert len(records["messages"]) == 2
    assert all(r["reason"] for r in records["messages"])


@pytest.mark.parametrize("method,path,body,raw,key,status,code", [
    ("POST", "/api/push", None, b"{not json", KEY, 400, "bad_json"),
    ("POST", "/api/push", {"data": 1}, None, KEY, 400, "bad_request"),
    ("POST", "/api/push", {"user": "a b", "data": 1}, None, KEY, 400, "bad_request"),
    ("POST", "/api/push", {"user": "a", "data": 1, "ttl": -5}, None, KEY, 400, "bad_request"),
    ("POST", "/api/push", {"user": "a", "data": 1}, None, "wrong", 401, "unauthorized"),
    ("POST", "/api/push", {"user": "a", "data": 1}, None, None, 401, "unauthorized"),
    ("POST", "/api/publish", {"channel": "nope", "data": 1}, None, KEY, 400, "bad_channel"),
    ("POST", "/api/publish", {"channel": "room:a", "data": "x" * 70000}, None, KEY, 413,
     "too_large"),
    ("POST", "/api/tokens", {"user": "a"}, None, "wrong", 401, "unauthorized"),
    ("GET", "/api/history?channel=room:a&since=x", None, None, KEY, 400, "bad_request"),
    ("GET", "/api/users/a/messages?status=bogus", None, None, KEY, 400, "bad_request"),
    ("GET", "/api/nothing-here", None, None, KEY, 404, "not_found"),
])
def test_api_errors(srv, method, path, body, raw, key, status, code):
    got_status, got = api(srv, method, path, body, key=key, raw=raw)
    assert got_status == status and got["error"] == code and got["reason"]


def test_an_http_retry_with_the_same_key_is_answered_once(srv):
    body = {"user": "kim", "data": "once", "category": "promo", "key": "req-1"}
    code, first = api(srv, "POST", "/api/push", body)
    assert code == 200 and "duplicate" not in first
    code, again = api(srv, "POST", "/api/push", {**body, "data": "ignored"})
    assert code == 200 and again["duplicate"] is True
    assert (again["msg"], again["offset"]) == (first["msg"], first["offset"])
    _, records = api(srv, "GET", "/api/users/kim/messages")
    assert [r["data"] for r in records["messages"]] == ["once"]  # and one promo counted:
    assert api(srv, "POST", "/api/push", {"user": "kim", "data": 2, "category": "promo"})[0] \
        == 200
    code, pub = api(srv, "POST", "/api/publish", {"channel": "room:k", "data": 1, "key": "p"})
    code2, pub2 = api(srv, "POST", "/api/publish", {"channel": "room:k", "data": 2, "key": "p"})
    assert code == code2 == 200 and pub2 == {**pub, "duplicate": True}
    code, bad = api(srv, "POST", "/api/push", {"user": "kim", "data": 1, "key": ""})
    assert code == 400 and "'key' must be a string" in bad["reason"]
