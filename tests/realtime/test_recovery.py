"""recovery.py in-process: a process that missed messages on a channel catches its
subscribers up from the store, in order, before anything newer, with no duplicate."""

from __future__ import annotations

import gevent
import gevent.event

from wsapp.realtime.engines.memory import MemoryBroker, MemoryStore
from wsapp.realtime.hub import Hub
from wsapp.realtime.messages import message_raw


class QuietBroker(MemoryBroker):
    """A broker that loses what it is asked to carry while `cut` (a bus outage)."""

    cut = False

    def publish(self, channel: str, text: str) -> None:
        if not self.cut:
            super().publish(channel, text)


def offsets(peer, timeout=0.5):
    return [m["offset"] for m in peer.messages(timeout) if m["op"] == "message"]


def test_an_offset_that_skips_ahead_brings_the_missed_ones_first(make, settings):
    broker = QuietBroker()
    hub = Hub(settings, store=MemoryStore(), broker=broker)
    a, pa = make(hub, "ann")
    b, pb = make(hub, "bob")
    hub.subscribe_replay(a, "room:r", None)
    hub.subscribe_replay(b, "room:r", None)
    hub.publish("room:r", {"n": 1})
    broker.cut = True  # offsets 2..4 are stored, but this process never hears of them
    for n in (2, 3, 4):
        hub.publish("room:r", {"n": n})
    broker.cut = False
    hub.publish("room:r", {"n": 5})  # 5 after 1: the process catches up on 2..4 first
    assert offsets(pa) == [1, 2, 3, 4, 5]
    assert offsets(pb) == [1, 2, 3, 4, 5]
    hub.publish("room:r", {"n": 6})
    assert offsets(pa) == [6]  # and carries on live


def test_resumed_catches_up_every_channel_even_with_nothing_new(make, settings):
    broker = QuietBroker()
    hub = Hub(settings, store=MemoryStore(), broker=broker)
    a, pa = make(hub, "ann")
    hub.subscribe_replay(a, "room:x", None)
    hub.subscribe_replay(a, "room:y", None)
    broker.cut = True
    hub.publish("room:x", {"n": 1})
    hub.publish("room:y", {"n": 1})
    hub.publish("room:y", {"n": 2})
    broker.cut = False
    hub.resumed()  # what the broker says when its bus is back
    got = [(m["channel"], m["offset"]) for m in pa.messages() if m["op"] == "message"]
    assert sorted(got) == [("room:x", 1), ("room:y", 1), ("room:y", 2)]
    assert [o for c, o in got if c == "room:y"] == [1, 2]  # in order


def test_messages_arriving_during_a_catch_up_wait_their_turn(make, settings):
    store = MemoryStore()
    hub = Hub(settings, store=store, broker=MemoryBroker())
    a, pa = make(hub, "ann")
    hub.subscribe_replay(a, "room:s", None)
    hub.publish("room:s", {"n": 1})
    gate = gevent.event.Event()
    history = store.history

    def slow_history(channel, since, limit):
        gate.wait(2)  # the store answers late; meanwhile offsets 4 and 5 arrive live
        return history(channel, since, limit)

    store.history = slow_history
    store.apply([("publish", "room:s", f"m{n}", None, 0, str(n)) for n in (2, 3, 4, 5)])
    for n in (4, 5, 3):  # out of order and overlapping what the catch-up will send
        hub.deliver("room:s", message_raw("room:s", n, f"m{n}", str(n), None, 0))
    gevent.sleep(0.1)
    assert offsets(pa, 0.2) == [1]  # nothing overtakes the missing 2 and 3
    gate.set()
    assert offsets(pa) == [2, 3, 4, 5]


def test_unstored_live_messages_are_never_mistaken_for_a_gap(make, settings):
    hub = Hub(settings, store=MemoryStore(), broker=MemoryBroker())
    a, pa = make(hub, "ann")
    hub.subscribe_replay(a, "sys:t", None)
    hub.publish("sys:t", {"n": 1})
    hub.publish("sys:t", {"tick": 1}, persist=False)
    hub.publish("sys:t", {"n": 2})
    assert offsets(pa) == [1, None, 2]
