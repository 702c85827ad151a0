"""Cross-process behaviour through a real Redis: publish, ordering, push, ack, recovery.

Two serve.py processes share one redis-server; every assertion is about what a client on
one process sees of what happened on the other.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from .conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def api(server, method, path, body=None):
    status, _, raw = server.http(method, path, body, AUTH)
    return status, json.loads(raw or b"null")


def messages(events, channel):
    return [e for e in events if e.get("op") == "message" and e.get("channel") == channel]


def collect(client, channel, n, timeout=30.0):
    """The next `n` messages of `channel` (other frames are kept in client.events)."""
    got = messages(client.events, channel)
    client.events = [e for e in client.events if e not in got]
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {n} messages on {channel}"
        frame = client.recv(left)
        if frame.get("op") == "message" and frame.get("channel") == channel:
            got.append(frame)
        else:
            client.events.append(frame)
    return got


def test_publish_on_one_process_reaches_subscribers_on_both_exactly_once(pair):
    a, b = pair
    on_a, on_b = a.connect("ann"), b.connect("bob")
    for c in (on_a, on_b):
        c.ok("subscribe", channel="room:x")
    reply = on_a.ok("publish", channel="room:x", data={"n": 1})
    status, body = api(b, "POST", "/api/publish", {"channel": "room:x", "data": {"n": 2}})
    assert status == 200 and body["offset"] == reply["offset"] + 1
    for c in (on_a, on_b):
        got = collect(c, "room:x", 2)
        assert [m["data"] for m in got] == [{"n": 1}, {"n": 2}]
        assert [m["offset"] for m in got] == [reply["offset"], reply["offset"] + 1]
        assert got[0]["from"] == "ann" and got[1]["from"] is None
        time.sleep(0.3)  # a duplicate would arrive by now
        assert not messages(c.sync(), "room:x"), "a message was delivered twice"


def test_offsets_arrive_in_order_everywhere_while_both_processes_publish(pair):
    a, b = pair
    subs = [a.connect("s1"), b.connect("s2")]
    for c in subs:
        c.ok("subscribe", channel="room:order")
    per_side = 100
    errors: list = []

    def publisher(server, tag):
        for i in range(per_side):
            status, _ = api(server, "POST", "/api/publish", {"channel": "room:order",
                                                             "data": [tag, i]})
            if status != 200:
                errors.append(status)

    threads = [threading.Thread(target=publisher, args=(s, t)) for s, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    try:
        got_by = [collect(c, "room:order", 2 * per_side, timeout=60) for c in subs]
    finally:
        for t in threads:
            t.join(60)
    assert not errors
    for got in got_by:
        assert [m["offset"] for m in got] == list(range(1, 2 * per_side + 1))
        for tag in "ab":  # each publisher's own messages keep their order too
            assert [m["data"][1] for m in got if m["data"][0] == tag] == list(range(per_side))


def test_push_reaches_the_user_on_another_process_and_an_ack_anywhere_counts(pair):
    a, b = pair
    tab_b = b.connect("cat")
    status, pushed = api(a, "POST", "/api/push", {"user": "cat", "data": {"hi": 1}})
    assert status == 200 and pushed["status"] in ("delivered", "stored")
    got = tab_b.wait_for(lambda f: f.get("msg") == pushed["msg"])
    assert got["channel"] == "user:cat" and got["data"] == {"hi": 1}
    # a second tab on the first process gets it too, as still unacked; it acks there
    tab_a = a.connect("cat")
    assert tab_a.wait_for(lambda f: f.get("msg") == pushed["msg"])["offset"] == got["offset"]
    assert tab_a.ok("ack", msg=pushed["msg"])["status"] == "acked"
    # both processes read the same record
    for server in (a, b):
        _, body = api(server, "GET", "/api/users/cat/messages")
        record = {r["msg"]: r for r in body["messages"]}[pushed["msg"]]
        # (attempts are counted asynchronously after delivery: the ack may overtake them)
        assert record["status"] == "acked" and record["acked"] >= record["created"]
    # an acked message is not delivered again, wherever the user reconnects
    again = b.connect("cat")
    assert not [e for e in again.sync() if e.get("op") == "message"]
    # acking someone else's message is refused on any process
    _, other = api(b, "POST", "/api/push", {"user": "dan", "data": 1})
    reply = a.connect("cat").request("ack", msg=other["msg"])
    assert reply["op"] == "error" and reply["code"] == "not_found"


def test_offline_push_is_delivered_on_connect_to_either_process(pair):
    a, b = pair
    sent = [api(a, "POST", "/api/push", {"user": "eve", "data": i})[1]["msg"] for i in range(3)]
    tab = b.connect("eve")
    got = [tab.wait_for(lambda f, m=m: f.get("msg") == m) for m in sent]
    assert [g["data"] for g in got] == [0, 1, 2]


def test_quota_is_global(pair):
    a, b = pair
    body = {"user": "fay", "data": 1, "category": "promo"}
    assert api(a, "POST", "/api/push", body)[0] == 200
    assert api(b, "POST", "/api/push", body)[0] == 200
    status, third = api(a, "POST", "/api/push", body)
    assert status == 429 and third["status"] == "suppressed" and "promo=2/day" in third["reason"]
    _, records = api(b, "GET", "/api/users/fay/messages?status=suppressed")
    assert [r["msg"] for r in records["messages"]] == [third["msg"]]


@pytest.mark.parametrize("rounds", [3])
def test_recovery_on_another_process_has_no_gap_and_no_duplicate(pair, rounds):
    a, b = pair
    total = 240
    errors: list = []

    def publisher():
        for i in range(total):
            server = (a, b)[i % 2]
            if api(server, "POST", "/api/publish", {"channel": "room:seam", "data": i})[0] != 200:
                errors.append(i)

    client = a.connect("gil")
    client.ok("subscribe", channel="room:seam")
    pub = threading.Thread(target=publisher)
    pub.start()
    offsets: list[int] = []
    try:
        servers = (b, a)
        for rnd in range(rounds):  # read some, drop the connection, resume on the other one
            offsets += [m["offset"] for m in collect(client, "room:seam", 25)]
            client.close()
            client = servers[rnd % 2].connect("gil")
            reply = client.ok("subscribe", channel="room:seam", since=offsets[-1])
            offsets += [m["offset"] for m in messages(client.events, "room:seam")]
            client.events = []
            assert reply["history_lost"] is False
        offsets += [m["offset"] for m in collect(client, "room:seam", total - len(offsets))]
    finally:
        pub.join(60)
    assert not errors
    assert offsets == list(range(1, total + 1))


def test_history_is_global_and_bounded(pair):
    a, b = pair  # --history-size 20
    for i in range(27):
        api((a, b)[i % 2], "POST", "/api/publish", {"channel": "room:short", "data": i})
    status, body = api(b, "GET", "/api/history?channel=room:short&since=0&limit=100")
    assert status == 200 and [m["offset"] for m in body["messages"]] == list(range(8, 28))
    assert body["first_offset"] == 8 and body["last_offset"] == 27
    client = a.connect("hal")
    reply = client.ok("subscribe", channel="room:short", since=2)
    assert reply["history_lost"] is True and reply["first_offset"] == 8
    assert [m["data"] for m in messages(client.events, "room:short")] == list(range(7, 27))
