"""What only the Redis engines do, on a real redis-server: one connection per URL and process,
records any process can read, keys under the prefix, envelopes split around the offset."""

from __future__ import annotations

import itertools
import json
import os

import pytest

from realtime.engines.conftest import EngineSettings
from realtime.engines.test_store_contract import now, pub
from wsapp.realtime.engines import open_engine
from wsapp.realtime.engines.redis.broker import RedisBroker
from wsapp.realtime.engines.redis.presence import RedisPresence
from wsapp.realtime.engines.redis.store import RedisStore, envelope_parts
from wsapp.realtime.messages import message_raw

_ids = itertools.count(1)


def unique_url(redis_server) -> str:
    return redis_server.url(f"r{os.getpid()}x{next(_ids)}")


@pytest.fixture
def store(redis_server):
    s = RedisStore(unique_url(redis_server), history_size=5, history_ttl=3600)
    yield s
    s.close()


def test_records_newest_first_and_data_survives_a_new_process_view(redis_server):
    url = unique_url(redis_server)
    s = RedisStore(url)
    t = now()
    s.apply([("push", "ann", f"p{i}", t, json.dumps({"i": i}), None, t + 60_000, {})
             for i in range(3)])
    s.close()
    again = RedisStore(url)  # another process would see the same
    try:
        assert [r["msg"] for r in again.records("ann", None, 10, now())] == [
            "p2", "p1", "p0"]
        assert [m["data"] for m in again.pending("ann", now())] == [
            {"i": 0}, {"i": 1}, {"i": 2}]
    finally:
        again.close()


def test_envelope_parts_rebuild_message_raw_exactly():
    for channel, sender, data in (("room:a", "ann", '{"x":[1,2]}'), ("user:b", None, '"é"')):
        head, tail = envelope_parts(channel, "m1", data, sender, 123)
        assert head + "42" + tail == message_raw(channel, 42, "m1", data, sender, 123)


def test_engines_of_one_url_share_one_connection_and_bus(redis_server):
    url = unique_url(redis_server)
    settings = EngineSettings()
    s, b = open_engine("store", url, settings), open_engine("broker", url, settings)
    p = open_engine("presence", url, settings)
    try:
        assert isinstance(s, RedisStore) and isinstance(b, RedisBroker)
        assert isinstance(p, RedisPresence)
        assert s.backend is b.backend is p.backend  # one pool and bus per URL and process
    finally:
        s.close()


def test_keys_stay_under_the_prefix(redis_server, store):
    before = set(store.backend.client.keys("*"))
    t = now()
    store.apply([pub("room:k", "m1"),
                 ("push", "ann", "p1", t, "1", "promo", t + 60_000, {"promo": (5, 60.0)})])
    store.ack("ann", "p1", now())
    store.records("ann", None, 10, now())
    new = set(store.backend.client.keys("*")) - before
    prefix = store.backend.prefix.encode()
    assert new and all(k.startswith(prefix) for k in new), new
    ttl = store.backend.client.pttl(prefix + b"h:room:k")
    assert 0 < ttl <= 3600 * 1000  # a channel's history expires once idle for history_ttl


def test_a_history_read_after_since_passes_the_barrier_even_with_nothing_to_replay(store):
    """A client resuming with `since` = the last offset gets no history, but messages at or
    below `since` may still be on their way to this process on the bus: the read publishes
    its barrier anyway, so they reach the replay's hold, never the client a second time."""
    store.apply([pub("room:seam", "m1"), pub("room:seam", "m2")])
    backend = store.backend
    listener = backend.client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(backend.bus)
    try:
        def read(since: int, token: str) -> list:
            return store._history_script(args=[backend.prefix, "room:seam", since, 10,
                                               backend.bus, token])

        assert read(2, "t-seam")[:3] == [2, b"1", 1]  # nothing after 2, barrier published
        assert read(0, "t-all")[2] == 1  # history to replay: barrier, as before
        assert read(0, "")[2] == 0  # no token (no bus read here): none
        empty = store._history_script(args=[backend.prefix, "room:none", 0, 10, backend.bus,
                                             "t-none"])
        assert empty == [0, None, 0]  # since 0 on an empty channel: nothing can be on its way
        got = []
        for _ in range(50):
            message = listener.get_message(timeout=0.1)
            if message is not None:
                got.append(message["data"])
            if len(got) >= 2:
                break
        assert got == [b"bt-seam", b"bt-all"]
    finally:
        listener.close()
