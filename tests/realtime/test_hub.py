"""The hub over real WebSockets on gevent socket pairs: registry, presence, fan-out."""

import json

import gevent

from wsapp.realtime.hub import Hub
from wsapp.websocket.frames import OP_TEXT, build_frame


def test_publish_reaches_each_subscriber_once(make, settings):
    hub = Hub(settings)
    a, pa = make(hub, "alice")
    b, pb = make(hub, "bob")
    c, pc = make(hub, "carol")
    hub.subscribe(a, "room:x")
    hub.subscribe(a, "room:x")  # twice: still one delivery
    hub.subscribe(b, "room:x")
    result = hub.publish("room:x", {"n": 1}, sender="bob")
    assert result["offset"] == 1
    got_a = [m for m in pa.messages() if m["op"] == "message"]
    assert got_a == [{"op": "message", "channel": "room:x", "offset": 1, "msg": result["msg"],
                      "data": {"n": 1}, "from": "bob", "ts": got_a[0]["ts"]}]
    assert [m["op"] for m in pb.messages()] == ["message"]
    assert pc.messages() == []


def test_presence_counts_tabs_once_and_fires_join_leave(make, settings):
    hub = Hub(settings)
    watcher, pw = make(hub, "w")
    hub.subscribe(watcher, "room:p")
    tab1, _ = make(hub, "alice")
    tab2, _ = make(hub, "alice")
    hub.subscribe(tab1, "room:p")
    hub.subscribe(tab2, "room:p")
    assert hub.presence("room:p") == {"members": ["alice", "w"], "count": 2, "connections": 3}
    hub.disconnect(tab1)
    assert hub.presence("room:p")["members"] == ["alice", "w"]
    hub.disconnect(tab2)
    assert hub.presence("room:p")["members"] == ["w"]
    events = [(m["op"], m["user"]) for m in pw.messages()]
    assert events == [("join", "alice"), ("leave", "alice")]


def test_disconnect_leaves_no_entries(make, settings):
    hub = Hub(settings)
    clients = [make(hub, f"u{i % 7}")[0] for i in range(50)]
    for i, c in enumerate(clients):
        hub.subscribe(c, f"room:{i % 5}")
        hub.subscribe(c, "sys:all")
    for c in clients:
        hub.disconnect(c)
        hub.disconnect(c)  # idempotent
    assert (hub.clients, hub.users, hub.channels, hub.members) == ({}, {}, {}, {})


def test_slow_reader_is_cut_without_delaying_others(make, settings):
    hub = Hub(settings.replace(max_backlog=64 * 1024))
    slow, _ = make(hub, "slow", rcvbuf=4096)  # never reads
    fast, pf = make(hub, "fast")
    hub.subscribe(slow, "room:s")
    hub.subscribe(fast, "room:s")
    payload = "x" * 2000
    received = []
    reader = gevent.spawn(lambda: received.extend(pf.messages(timeout=3)))
    for i in range(300):  # 600 KB: far past the slow reader's 64 KiB backlog
        hub.publish("room:s", {"i": i, "p": payload})
        gevent.sleep(0)  # publishes arrive from the network: other greenlets run between
    reader.join(5)
    assert slow.id not in hub.clients and slow not in hub.channels.get("room:s", ())
    gevent.sleep(1.5)  # terminate() runs in its own greenlet
    assert slow.ws.closed
    assert [m["data"]["i"] for m in received if m["op"] == "message"] == list(range(300))
    assert ("leave", "slow") in [(m["op"], m.get("user")) for m in received]


def test_send_to_user_reaches_all_tabs(make, settings):
    hub = Hub(settings)
    t1, p1 = make(hub, "alice")
    t2, p2 = make(hub, "alice")
    other, po = make(hub, "bob")
    assert hub.send_to_user("alice", '{"op":"message","x":1}') == 2
    assert len(p1.messages()) == 1 and len(p2.messages()) == 1 and po.messages() == []


def test_frames_are_whole_under_concurrent_senders(make, settings):
    hub = Hub(settings)
    c, peer = make(hub, "a")
    hub.subscribe(c, "room:z")
    big = "y" * 200_000
    sender = gevent.spawn(lambda: [c.ws.send(json.dumps({"op": "direct", "p": big}))
                                   for _ in range(5)])
    for i in range(5):
        hub.publish("room:z", {"i": i, "p": big})
    got = peer.messages(timeout=2)
    sender.join()
    assert len(got) == 10 and all(len(m.get("p", m.get("data", {}).get("p"))) == 200_000
                                  for m in got)
    assert build_frame(OP_TEXT, b"") == b"\x81\x00"


def test_ephemeral_publish_is_delivered_but_not_stored(make, settings):
    hub = Hub(settings)
    c, peer = make(hub, "a")
    hub.subscribe(c, "sys:tick")
    result = hub.publish("sys:tick", {"t": 1}, persist=False)
    assert result["offset"] is None
    [got] = peer.messages()
    assert got["offset"] is None and got["data"] == {"t": 1}
    assert hub.store.last_offset("sys:tick") == 0


def test_replay_passes_unstored_live_messages_through(make, settings):
    hub = Hub(settings)
    c, peer = make(hub, "a")
    hub.publish("sys:mixed", {"n": 1})
    # A live (offset null) message arriving while a replay is held must not break the
    # offset comparison at the seam.
    original = hub.store.history

    def history_with_a_live_message(channel, since, limit):
        result = original(channel, since, limit)
        hub.publish("sys:mixed", {"live": True}, persist=False)  # arrives during the replay
        return result

    hub.store.history = history_with_a_live_message
    reply = hub.subscribe_replay(c, "sys:mixed", 0)
    got = [(m["offset"], m["data"]) for m in peer.messages()]
    assert got == [(1, {"n": 1}), (None, {"live": True})] and reply["replayed"] == 1


def test_one_bad_job_never_fails_another_callers_job(make, settings):
    """A job the store cannot take rolls its batch back; the others in that batch are
    stored anyway, each on its own, and only the bad one's caller gets the error."""
    from wsapp.realtime.engines.memory import MemoryStore

    class Picky(MemoryStore):
        def apply(self, jobs):
            if any(job[0] == "publish" and job[5] == '"poison"' for job in jobs):
                raise ValueError("the store refused a job")
            return super().apply(jobs)

    hub = Hub(settings, store=Picky())
    c, peer = make(hub, "ann")
    hub.subscribe_replay(c, "room:b", None)
    results = {}

    def publish(data):
        try:
            results[data] = hub.publish("room:b", data)["offset"]
        except ValueError as exc:
            results[data] = str(exc)

    jobs = [gevent.spawn(publish, d) for d in ("a", "poison", "b", "c")]  # one batch
    gevent.joinall(jobs, timeout=5)
    assert results["poison"] == "the store refused a job"
    assert sorted(results[d] for d in "abc") == [1, 2, 3]
    assert [m["data"] for m in peer.messages() if m["op"] == "message"] == ["a", "b", "c"]
