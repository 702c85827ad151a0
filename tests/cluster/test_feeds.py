"""Feeds across processes sharing one Redis store (docs/feeds.md), once per source.

The crash point: a process started with WSAPP_TEST_HALT_BEFORE_ACK=1 stores its first batch
(the subscribers get it) and then halts before acknowledging it, saying so in its log
(feeds/runner.py reads the variable at that one place). The test SIGKILLs it right then — the
one moment at-least-once delivery cannot avoid a repeat — and starts another process on the
same feed: the source hands the message out again (RabbitMQ requeues it when the dead
connection drops, PostgreSQL releases the row lock with the dead session, Redis lets a live
consumer claim the idle entry) and the key makes it a no-op.
"""

from __future__ import annotations

import json
import time

HALT = {"WSAPP_TEST_HALT_BEFORE_ACK": "1"}


def records(server, user: str) -> list[dict]:
    status, _, body = server.http("GET", f"/api/users/{user}/messages?limit=1000",
                                  headers={"Authorization": f"Bearer {server.api_key}"})
    assert status == 200, body
    return json.loads(body)["messages"]


def test_a_process_killed_between_commit_and_ack_is_redelivered_and_applied_once(
        cluster, feed_source):
    observer = cluster.add()  # no feed: where the user is connected
    ann = observer.connect("ann")
    halting = cluster.add("--feed", feed_source.url(), env=HALT)
    halting.wait_feed(lambda f: f["state"] == "up")
    feed_source.send({"op": "push", "user": "ann", "data": "exactly once", "key": "crash-1"})
    halting.wait_for_log(r"1 message\(s\) stored, halting before the acknowledgement")
    assert ann.wait_for(lambda f: f.get("channel") == "user:ann")["data"] == "exactly once"
    halting.kill9()  # stored and delivered, never acknowledged
    taker = cluster.add("--feed", feed_source.url())
    feed = taker.wait_feed(lambda f: f["processed"] == 1, timeout=30, what="redelivery")
    assert feed["duplicates"] == 1 and feed["redelivered"] == 1, feed
    assert [e for e in ann.sync() if e.get("channel") == "user:ann"] == []  # no second copy
    [record] = records(observer, "ann")
    assert record["data"] == "exactly once"
    feed_source.send({"op": "push", "user": "ann", "data": "and the next"})
    assert ann.wait_for(lambda f: f.get("channel") == "user:ann")["data"] == "and the next"


def test_two_processes_on_one_feed_apply_each_message_once(cluster, feed_source):
    url = feed_source.url(batch=10)
    first, second = cluster.add("--feed", url), cluster.add("--feed", url)
    for server in (first, second):
        server.wait_feed(lambda f: f["state"] == "up")
    n = 400
    feed_source.send_many({"op": "push", "user": "crowd", "data": i, "ttl": 600}
                          for i in range(n))
    deadline = time.monotonic() + 60
    while sum(s.feed()["processed"] for s in (first, second)) < n and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # anything processed twice would show by now
    feeds = [server.feed() for server in (first, second)]
    assert sum(f["processed"] for f in feeds) == n, feeds
    assert all(f["processed"] > 0 for f in feeds), feeds  # both took part
    assert all(f["duplicates"] == 0 and f["redelivered"] == 0 for f in feeds), feeds
    assert sorted(r["data"] for r in records(first, "crowd")) == list(range(n))
