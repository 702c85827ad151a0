"""Feeds against the real services (docs/feeds.md): each test runs once per source — a Redis
Stream on our redis-server, a RabbitMQ queue, a PostgreSQL outbox table — through a real
serve.py with `--feed`, and checks what clients receive, what the dead letters hold and what
/healthz says. Cluster behaviour (a crash between commit and ack, two consumers) is in
tests/cluster/test_feeds.py.
"""

from __future__ import annotations

import json
import time

from feedsources import RedisStreamSource
from tcpproxy import TcpProxy

MAX_PUBLISH = 1024


def _up(feed: dict) -> bool:
    return feed["state"] == "up"


def data_of(client, channel: str, timeout: float = 10.0) -> object:
    """The data of the next message on `channel` the client gets."""
    return client.wait_for(lambda f: f.get("channel") == channel, timeout)["data"]


def test_pushes_and_publishes_reach_connected_and_offline_users(feed_source, launch):
    srv = launch("--feed", feed_source.url())
    srv.wait_feed(_up)
    ann = srv.connect("ann")
    ann.ok("subscribe", channel="room:news")
    feed_source.send({"op": "push", "user": "ann", "data": {"n": 1}})
    feed_source.send({"op": "push", "user": "bob", "data": {"n": 2}, "category": "news",
                      "ttl": 600, "key": None})
    feed_source.send({"op": "publish", "channel": "room:news", "data": "hello"})
    assert data_of(ann, "user:ann") == {"n": 1}
    assert data_of(ann, "room:news") == "hello"
    srv.wait_feed(lambda f: f["processed"] == 3)
    bob = srv.connect("bob")  # offline when it was pushed: delivered on connect
    assert data_of(bob, "user:bob") == {"n": 2}
    status, _, body = srv.http("GET", "/api/users/bob/messages")
    [record] = json.loads(body)["messages"]
    assert status == 200 and record["category"] == "news"
    assert record["expires"] - record["created"] == 600_000
    feed = srv.wait_feed(lambda f: f["lag"] == 0, what="lag back to 0")
    assert feed["source"] == feed_source.kind and feed["dead_lettered"] == 0
    metrics = srv.metrics()
    assert metrics.get("wsapp_feed_processed_total", feed=feed["feed"]) == 3
    assert metrics.get("wsapp_feed_up", feed=feed["feed"]) == 1


def test_a_repeated_key_is_applied_once(feed_source, launch):
    srv = launch("--feed", feed_source.url())
    srv.wait_feed(_up)
    ann = srv.connect("ann")
    for n in range(3):  # a producer retrying: same key, whatever the body says
        feed_source.send({"op": "push", "user": "ann", "data": f"try {n}", "key": "order-7"})
    feed_source.send({"op": "push", "user": "ann", "data": "next", "key": "order-8"})
    assert data_of(ann, "user:ann") == "try 0"
    assert data_of(ann, "user:ann") == "next"
    feed = srv.wait_feed(lambda f: f["processed"] == 4)
    assert feed["duplicates"] == 2
    assert [e for e in ann.sync() if e.get("channel") == "user:ann"] == []
    status, _, body = srv.http("GET", "/api/users/ann/messages")
    assert [r["data"] for r in json.loads(body)["messages"]] == ["next", "try 0"]


def test_poison_is_dead_lettered_with_its_reason_and_the_next_message_flows(feed_source,
                                                                             launch):
    srv = launch("--feed", feed_source.url(), "--max-publish-size", str(MAX_PUBLISH))
    srv.wait_feed(_up)
    ann = srv.connect("ann")
    poison = [
        ({"op": "zap", "data": 1}, "unknown op 'zap'"),
        ({"user": "ann", "data": 1}, "missing field 'op'"),
        ({"op": "push", "user": "ann", "data": 1, "colour": "red"}, "unknown field(s) 'colour'"),
        ({"op": "push", "user": "ann"}, "missing field 'data'"),
        ({"op": "push", "user": "a b", "data": 1}, "'user' must be"),
        ({"op": "publish", "channel": "nope", "data": 1}, "bad channel name"),
        ({"op": "publish", "channel": "room:x", "data": 1, "ttl": 5}, "unknown field(s) 'ttl'"),
        ({"op": "push", "user": "ann", "data": 1, "ttl": -1}, "'ttl' must be"),
        ({"op": "push", "user": "ann", "data": 1, "category": 7}, "'category' must be"),
        ({"op": "push", "user": "ann", "data": "x" * (MAX_PUBLISH + 10)}, "the limit is 1024"),
        ([1, 2], "must be a JSON object"),
    ]
    if feed_source.invalid_json:  # a jsonb column cannot even hold it
        poison.append(("{not json", "not valid JSON"))
    for message, _ in poison:
        feed_source.send(message)
    feed_source.send({"op": "push", "user": "ann", "data": "after the poison"})
    assert data_of(ann, "user:ann") == "after the poison"
    # (counted once settled at the source: a moment after the user has it)
    feed = srv.wait_feed(lambda f: f["dead_lettered"] == len(poison) and f["processed"] >= 1)
    assert feed["processed"] == 1
    dead = feed_source.dead()
    assert len(dead) == len(poison)
    for (body, reason), (message, expected) in zip(dead, poison, strict=True):
        assert expected in reason, (reason, expected)
        if isinstance(message, str):
            assert body == message  # kept as it came, to be fixed and sent again
        else:
            assert json.loads(body) == message
    assert srv.log().count("dead-lettered to") == len(poison)


def test_a_malformed_stream_entry_is_poison(redis_server, launch):
    source = RedisStreamSource(redis_server.port)  # only a stream entry has fields of its own
    try:
        srv = launch("--feed", source.url())
        srv.wait_feed(_up)
        source.send_fields({"msg": "{}", "other": "x"})
        source.send({"op": "publish", "channel": "room:x", "data": 1})
        srv.wait_feed(lambda f: f["processed"] == 1 and f["dead_lettered"] == 1)
        [(_, reason)] = source.dead()
        assert "one field 'message' (it has: msg, other)" in reason
    finally:
        source.close()


def test_the_feed_resumes_by_itself_after_its_source_went_away(feed_source, launch):
    proxy = TcpProxy(_port_of(feed_source)).start()
    try:
        srv = launch("--feed", feed_source.url(port=proxy.port, timeout=2))
        srv.wait_feed(_up)
        ann = srv.connect("ann")
        proxy.stop()  # the service is gone: connections reset, new ones refused
        srv.wait_feed(lambda f: f["state"] == "down", what="down")
        feed_source.send({"op": "push", "user": "ann", "data": "sent while away"})
        time.sleep(1.5)  # a few reconnect attempts fail meanwhile
        proxy.start()
        assert data_of(ann, "user:ann", timeout=20) == "sent while away"
        srv.wait_feed(_up)
        name = srv.feed()["feed"]
        log = srv.log()
        assert log.count(f"feed {name} (") - log.count("connected; dead letters") == 2, log
        assert log.count(f"feed {name} ({feed_source.url(port=proxy.port, timeout=2)}"
                         .replace("guest:guest", "guest:***") + ") unreachable") == 1
        assert log.count("reachable again") == 1
    finally:
        proxy.stop()


def test_a_hung_source_stalls_neither_the_server_nor_the_feed_for_long(feed_source, launch):
    proxy = TcpProxy(_port_of(feed_source)).start()
    try:
        srv = launch("--feed", feed_source.url(port=proxy.port, timeout=1))
        srv.wait_feed(_up)
        proxy.pause()  # connections stay open, nothing comes back: a hung service
        worst = 0.0
        for _ in range(10):
            started = time.monotonic()
            assert srv.http("GET", "/healthz", timeout=5)[0] == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.2)
        assert worst < 0.5, f"/healthz took {worst:.2f}s while the feed's source hung"
        echo = srv.connect("ann")
        assert echo.ok("ping")
        srv.wait_feed(lambda f: f["state"] == "down", timeout=15, what="down (timed out)")
        feed_source.send({"op": "push", "user": "ann", "data": "after the hang"})
        proxy.resume()
        assert data_of(echo, "user:ann", timeout=30) == "after the hang"
    finally:
        proxy.stop()


def _port_of(source) -> int:
    return {"redis": getattr(source, "port", 0), "amqp": 5672, "postgresql": 5432}[source.kind]
