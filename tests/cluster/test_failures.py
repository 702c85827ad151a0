"""Failures: a process killed with kill -9, Redis killed and restarted under load, a process
cut off from Redis while the other carries on."""

from __future__ import annotations

import json
import threading
import time

from realtime.helpers import Closed
from tcpproxy import TcpProxy

from wsapp.realtime.engines.redis.presence import HEARTBEAT, PROCESS_TTL

from .conftest import API_KEY, SECRET, Cluster

AUTH = {"Authorization": f"Bearer {API_KEY}"}
BOUND = PROCESS_TTL + HEARTBEAT  # the documented bound for a dead process's users


def test_users_of_a_process_killed_with_kill_9_leave_presence_within_the_bound(cluster):
    a, b = cluster.start(2)
    alice = a.connect("alice")
    alice.ok("subscribe", channel="room:k")
    carol = b.connect("carol")
    carol.ok("subscribe", channel="room:k")
    alice.wait_for(lambda f: f.get("op") == "join" and f["user"] == "carol")
    assert alice.ok("presence", channel="room:k")["members"] == ["alice", "carol"]
    killed = time.monotonic()
    b.kill9()
    leave = alice.wait_for(lambda f: f.get("op") == "leave", timeout=BOUND + 10)
    took = time.monotonic() - killed
    assert leave == {"op": "leave", "channel": "room:k", "user": "carol"}
    assert took <= BOUND + 1, f"carol left presence after {took:.1f}s (bound {BOUND}s)"
    reply = alice.ok("presence", channel="room:k")
    assert reply["members"] == ["alice"] and reply["connections"] == 1
    assert "Traceback" not in a.log()


def test_redis_killed_and_restarted_under_load(tmp_path, own_redis):
    cluster = Cluster(tmp_path, own_redis)
    try:
        a, b = cluster.start(2)
        x, x2, y = a.connect("x"), a.connect("x2"), b.connect("y")
        for c in (x, x2, y):
            c.ok("subscribe", channel="room:r")
        for c in (x, x2, y):  # everybody's join has gone round before the outage
            c.sync()
        replies: list[int] = []
        failures: list[bytes] = []
        stop = threading.Event()

        def load():  # HTTP publishes to process a, all the time, outage or not
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                status, _, raw = a.http("POST", "/api/publish",
                                        {"channel": "room:load", "data": 1}, AUTH)
                replies.append(status)
                if status != 200:
                    failures.append(raw)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            time.sleep(0.5)
            own_redis.kill()
            # Once each process has seen Redis go (a write already under way when it died may
            # be stored, so it is answered "may be stored": test_chaos covers that race) ...
            for server in (a, b):
                server.wait_for_log(r"Redis \S+ unreachable", 10)
            # ... local publishes still reach local subscribers, not stored (offset null)
            reply = x.ok("publish", channel="room:r", data="during")
            assert reply["offset"] is None
            for c in (x, x2):
                got = c.wait_for(lambda f: f.get("op") == "message" and f["data"] == "during")
                assert got["offset"] is None
            # what needs Redis says so, at once, and the connection stays usable
            err = x.request("ack", msg="nope")
            assert err["op"] == "error" and err["code"] == "unavailable", err
            assert "Redis" in err["reason"]
            err = y.request("subscribe", channel="room:other", since=0)
            assert err["code"] == "unavailable"
            status, _, raw = b.http("POST", "/api/push", {"user": "y", "data": 1}, AUTH)
            assert status == 503 and json.loads(raw)["error"] == "unavailable", raw
            assert y.ok("presence", channel="room:r")["members"] == ["y"]  # local view
            time.sleep(1.0)  # several reconnect attempts go by: logged once, not per try
            for server in (a, b):
                assert server.log().count("unreachable (") == 1, server.log()[-3000:]
            assert not messages_of(y.sync(), "during")  # never crossed to the other process

            own_redis.start(port=own_redis.port)
            for server in (a, b):
                server.wait_for_log(r"Redis \S+ reachable again after", 20)
            # cross-process delivery resumes (and the offsets start over: no persistence)
            reply = x.ok("publish", channel="room:r", data="after")
            assert reply["offset"] >= 1
            got = y.wait_for(lambda f: f.get("op") == "message" and f["data"] == "after")
            assert got["offset"] == reply["offset"]
            # what was published during the outage is not sent again now Redis is back
            assert not messages_of(x.sync() + x2.sync() + y.sync(), "during")
            # presence is rebuilt from each process's connections
            deadline = time.monotonic() + 10
            while y.ok("presence", channel="room:r")["members"] != ["x", "x2", "y"]:
                assert time.monotonic() < deadline, "presence not rebuilt after the restart"
                time.sleep(0.2)
        finally:
            stop.set()
            loader.join(30)
        # Only a publish cut off mid-write may fail (the loader sends one at a time), and it
        # says it may be stored: never "offset null" for a write whose fate is unknown.
        assert replies and set(replies) <= {200, 503} and replies.count(503) <= 1, failures
        assert all(b"may be" in raw and b"stored" in raw for raw in failures), failures
        for server in (a, b):
            assert server.proc.poll() is None
            # the one traceback allowed: the pipeline logs a failed push's job
            log = server.log()
            assert log.count("Traceback") == log.count("store job push failed"), log[-3000:]
    finally:
        cluster.stop_all()


def messages_of(events, data):
    return [e for e in events if e.get("op") == "message" and e.get("data") == data]


def test_a_process_started_while_redis_is_down_serves_locally_then_joins(tmp_path, own_redis):
    cluster = Cluster(tmp_path, own_redis)
    try:
        own_redis.kill()
        a = cluster.add(wait=True)
        c = a.connect("early")
        c.ok("subscribe", channel="room:e")
        assert c.ok("publish", channel="room:e", data=1)["offset"] is None
        assert c.wait_for(lambda f: f.get("op") == "message")["data"] == 1
        own_redis.start(port=own_redis.port)
        a.wait_for_log(r"Redis \S+ reachable again after", 20)
        b = cluster.add()
        d = b.connect("late")
        d.ok("subscribe", channel="room:e")
        reply = c.ok("publish", channel="room:e", data=2)
        assert reply["offset"] == 1
        assert d.wait_for(lambda f: f.get("op") == "message")["data"] == 2
        try:
            json.dumps(c.sync())
        except Closed:  # pragma: no cover - the connection must have survived
            raise
    finally:
        cluster.stop_all()


def test_a_graceful_stop_leaves_presence_at_once(cluster):
    a, b = cluster.start(2)
    watcher = a.connect("wat")
    watcher.ok("subscribe", channel="room:g")
    dan = b.connect("dan")
    dan.ok("subscribe", channel="room:g")
    watcher.wait_for(lambda f: f.get("op") == "join" and f["user"] == "dan")
    stopped = time.monotonic()
    b.stop()  # SIGTERM: close frames, then the process takes its share out of Redis
    leave = watcher.wait_for(lambda f: f.get("op") == "leave", timeout=BOUND)
    assert leave["user"] == "dan" and time.monotonic() - stopped < HEARTBEAT + 2
    assert watcher.ok("presence", channel="room:g")["members"] == ["wat"]


def test_a_process_cut_off_from_the_bus_catches_its_subscribers_up(cluster, redis_server):
    """Another process publishes while this one's bus connection is down: when it is back,
    its subscribers get every missed offset, in order, before newer ones, once each."""
    import redis

    a, b = cluster.start(2)
    watcher = b.connect("watcher")
    watcher.ok("subscribe", channel="room:gap")
    admin = redis.Redis(port=redis_server.port)
    bus = f"wsapp-bus-{b.proc.pid}"
    published: list[int] = []
    stop = threading.Event()

    def load() -> None:  # a steady stream through process a, before, during and after
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline and len(published) < 300:
            status, _, raw = a.http("POST", "/api/publish",
                                    {"channel": "room:gap", "data": len(published)}, AUTH)
            assert status == 200, raw
            published.append(json.loads(raw)["offset"])
            time.sleep(0.005)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(0.3)
        [victim] = [c for c in admin.client_list() if c["name"] == bus]
        admin.client_kill_filter(_id=victim["id"])  # only b's bus connection dies
        b.wait_for_log(r"Redis \S+ reachable again after", 10)
        time.sleep(0.3)
    finally:
        stop.set()
        loader.join(30)
    seen = []
    deadline = time.monotonic() + 10
    while len(seen) < len(published) and time.monotonic() < deadline:
        try:
            frame = watcher.recv(timeout=2)
        except TimeoutError:
            break  # what never comes shows in the assertion below
        if frame.get("op") == "message":
            seen.append(frame["offset"])
    assert published == list(range(1, len(published) + 1))
    assert seen == published  # every offset, in order, none twice
    assert b.log().count("caught up room:gap") >= 1, b.log()[-3000:]


def test_a_catch_up_skips_what_a_client_resumed_with_elsewhere(cluster, redis_server):
    """A client moves to a process while that process is cut off from Redis and resubscribes
    with `since` (refused: Redis is unreachable from there). When the process is back it
    catches its subscribers up; the newcomer, which already had those messages, gets none of
    them again — only what is new."""
    a = cluster.add()
    proxy = TcpProxy(redis_server.port).start()
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0?prefix={cluster.prefix}"
        b = cluster.add("--broker", url, "--store", url, "--secret", SECRET, "--log-level",
                        "INFO", "--ping-interval", "60", plain=True)
        watcher = b.connect("watcher")  # b serves the room from before the outage
        watcher.ok("subscribe", channel="room:moved")
        proxy.stop()  # b alone loses Redis
        b.wait_for_log(r"Redis \S+ unreachable", 10)
        offsets = [publish(a, "room:moved", n) for n in range(5)]
        assert offsets == [1, 2, 3, 4, 5]
        mover = b.connect("mover")  # got 1..5 on a, say, and now resumes on b
        err = mover.request("subscribe", channel="room:moved", since=5)
        assert err["code"] == "unavailable", err
        proxy.start()
        b.wait_for_log(r"caught up room:moved: offsets 1\.\.5", 20)
        assert publish(a, "room:moved", 5) == 6
        for client, expected in ((watcher, [1, 2, 3, 4, 5, 6]), (mover, [6])):
            got = []
            while len(got) < len(expected):
                frame = client.wait_for(lambda f: f.get("op") == "message")
                got.append(frame["offset"])
            assert got == expected
            assert not [f for f in client.sync() if f.get("op") == "message"]  # none twice
    finally:
        proxy.stop()


def publish(server, channel: str, data) -> int:
    status, _, raw = server.http("POST", "/api/publish", {"channel": channel, "data": data},
                                 AUTH)
    assert status == 200, raw
    return json.loads(raw)["offset"]
