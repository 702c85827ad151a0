"""Global presence across processes: members, join/leave from anywhere, online users."""

from __future__ import annotations

import time


def joins_and_leaves(events, channel):
    return [(e["op"], e["user"]) for e in events
            if e.get("op") in ("join", "leave") and e.get("channel") == channel]


def wait_presence(server_client, channel, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        reply = server_client.ok("presence", channel=channel)
        if predicate(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def test_members_and_events_are_global_and_count_tabs_anywhere(pair):
    a, b = pair
    alice = a.connect("alice")
    alice.ok("subscribe", channel="room:p")
    bob_b = b.connect("bob")
    bob_b.ok("subscribe", channel="room:p")
    assert alice.wait_for(lambda f: f.get("op") == "join")["user"] == "bob"
    assert not joins_and_leaves(bob_b.sync(), "room:p")  # nobody is told of their own join
    for client in (alice, bob_b):
        reply = wait_presence(client, "room:p", lambda r: r["count"] == 2)
        assert reply["members"] == ["alice", "bob"] and reply["connections"] == 2
    # bob's second tab, on the other process: no second join; one member, two connections
    bob_a = a.connect("bob")
    bob_a.ok("subscribe", channel="room:p")
    reply = wait_presence(alice, "room:p", lambda r: r["connections"] == 3)
    assert reply["members"] == ["alice", "bob"] and reply["count"] == 2
    bob_b.close()  # one of two tabs gone: still present, no leave
    reply = wait_presence(alice, "room:p", lambda r: r["connections"] == 2)
    assert reply["members"] == ["alice", "bob"]
    assert not joins_and_leaves(alice.sync(), "room:p")
    bob_a.ok("unsubscribe", channel="room:p")  # the last one: leave, seen on both sides
    assert alice.wait_for(lambda f: f.get("op") == "leave")["user"] == "bob"
    reply = wait_presence(alice, "room:p", lambda r: r["count"] == 1)
    assert reply["members"] == ["alice"] and reply["connections"] == 1
    # the HTTP API answers the same on the other process
    status, _, body = b.http("GET", "/api/presence?channel=room:p",
                             headers={"Authorization": f"Bearer {b.api_key}"})
    assert status == 200 and b'"members":["alice"]' in body.replace(b" ", b"")


def test_online_users_are_counted_across_processes(pair):
    a, b = pair
    watcher = a.connect("watch")
    watcher.ok("subscribe", channel="sys:dashboard")
    tabs = [a.connect("on1"), b.connect("on2"), b.connect("on3"), a.connect("on3")]

    def users_seen():
        frame = watcher.wait_for(lambda f: f.get("channel") == "sys:dashboard", timeout=10)
        return frame["data"]["users"]

    # one process publishes the cluster's figures each second; once the tabs are registered
    # (and the 1 s cache has turned over) they count the users of both
    deadline = time.monotonic() + 15
    while users_seen() < 4:
        assert time.monotonic() < deadline, "the online count never reached 4"
    time.sleep(1.5)
    watcher.sync()
    # watch, on1, on2, on3 (two tabs), plus users other tests of this module left online
    assert min(users_seen() for _ in range(4)) >= 4
    for tab in tabs:
        tab.close()


def _dashboard_ticks(client, seconds: float) -> list[dict]:
    """The sys:dashboard payloads `client` receives in the next `seconds`."""
    ticks = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            frame = client.recv(timeout=left)
        except TimeoutError:
            break
        if frame.get("channel") == "sys:dashboard":
            ticks.append(frame["data"])
    return ticks


def test_the_dashboard_ticks_once_a_second_with_the_sums_of_every_process(pair):
    a, b = pair
    on_a, on_b = a.connect("dash-a"), b.connect("dash-b")
    for watcher in (on_a, on_b):
        watcher.ok("subscribe", channel="sys:dashboard")
    extra = [b.connect(f"dash-extra{i}") for i in range(3)]
    for client in extra:  # traffic on b only: a's subscribers must still see it counted
        for _ in range(5):
            client.ok("ping")
    time.sleep(2.5)  # let every process share its counters at least twice
    on_a.sync()
    on_b.sync()
    seen_a, seen_b = _dashboard_ticks(on_a, 4.5), _dashboard_ticks(on_b, 0.5)
    seen_b += _dashboard_ticks(on_b, 0.5)
    # one publisher: a tick a second (two processes each ticking would give ~9 here), and
    # the subscribers of both processes get the same ticks
    assert 3 <= len(seen_a) <= 6, [t["time"] for t in seen_a]
    times = [t["time"] for t in seen_a]
    # (a late tick is followed by one on the next whole second: > 0.5 s apart, not ~0 s)
    assert all(later - earlier > 500 for earlier, later in zip(times, times[1:], strict=False))
    # b's watcher was read after a's: it holds the same ticks (its sync may have eaten the
    # first), then maybe newer ones
    times_b = [t["time"] for t in seen_b]
    assert set(times[1:]) <= set(times_b), (times, times_b)
    assert all(t in times or t > times[-1] for t in times_b), (times, times_b)
    # the figures are the cluster's: 5 connections here, b's traffic counted at a
    last = seen_a[-1]
    assert last["connections"] >= 5, last
    assert last["users"] >= 5, last
    assert last["messages_in"] >= 15, last
    for client in (on_a, on_b, *extra):
        client.close()
