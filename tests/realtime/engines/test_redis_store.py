"""The Redis store against the SQLite store's contract, on a real redis-server.

The contract tests of tests/delivery/test_store.py run here unchanged with a RedisStore
behind the `store` fixture; what only Redis does (keys under a prefix, bus publishing,
history by age) is tested below them.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest

from realtime.engines import test_sqlite as contract
from wsapp.realtime.engines.memory import open_broker
from wsapp.realtime.engines.redis.backend import RedisBroker, RedisStore, envelope_parts
from wsapp.realtime.engines.sqlite import open_store
from wsapp.realtime.messages import message_raw

_ids = itertools.count(1)


def unique_url(redis_server) -> str:
    return redis_server.url(f"s{os.getpid()}x{next(_ids)}")


@pytest.fixture
def store(redis_server):
    s = RedisStore(unique_url(redis_server), history_size=5, history_ttl=3600)
    yield s
    s.close()


# The SQLite store's contract, verbatim.
test_offsets_are_per_channel_and_monotonic = contract.test_offsets_are_per_channel_and_monotonic
test_history_is_bounded_and_says_what_it_kept = \
    contract.test_history_is_bounded_and_says_what_it_kept
test_push_lifecycle = contract.test_push_lifecycle
test_expiry = contract.test_expiry
test_quotas_per_category_and_total = contract.test_quotas_per_category_and_total
test_quota_batch_is_exact = contract.test_quota_batch_is_exact
test_ack_before_the_delivered_update_still_records_delivery = \
    contract.test_ack_before_the_delivered_update_still_records_delivery


def test_history_by_age(redis_server):
    s = RedisStore(unique_url(redis_server), history_size=100, history_ttl=1)
    try:
        old = ("publish", "room:o", "m1", None, contract.now() - 5000, "1")
        s.apply([old, contract.pub("room:o", "m2")])
        assert [m["msg"] for m in s.history("room:o", 0, 10)["messages"]] == ["m2"]
        assert s.last_offset("room:o") == 2  # offsets never go back, whatever is dropped
    finally:
        s.close()


def test_an_unknown_job_is_refused_before_anything_is_written(store):
    store.apply([contract.pub("room:x", "one")])
    with pytest.raises(ValueError, match="unknown store job"):
        store.apply([contract.pub("room:x", "ok"), ("bogus",)])
    assert store.last_offset("room:x") == 1


def test_records_newest_first_and_data_survives_a_new_process_view(redis_server):
    url = unique_url(redis_server)
    s = RedisStore(url)
    t = contract.now()
    s.apply([("push", "ann", f"p{i}", t, json.dumps({"i": i}), None, t + 60_000, {})
             for i in range(3)])
    s.close()
    again = RedisStore(url)  # another process would see the same
    try:
        assert [r["msg"] for r in again.records("ann", None, 10, contract.now())] == [
            "p2", "p1", "p0"]
        assert [m["data"] for m in again.pending("ann", contract.now())] == [
            {"i": 0}, {"i": 1}, {"i": 2}]
    finally:
        again.close()


def test_envelope_parts_rebuild_message_raw_exactly():
    for channel, sender, data in (("room:a", "ann", '{"x":[1,2]}'), ("user:b", None, '"é"')):
        head, tail = envelope_parts(channel, "m1", data, sender, 123)
        assert head + "42" + tail == message_raw(channel, 42, "m1", data, sender, 123)


def test_urls_open_the_redis_classes(redis_server):
    url = unique_url(redis_server)
    s, b = open_store(url, 10, 60), open_broker(url)
    try:
        assert isinstance(s, RedisStore) and isinstance(b, RedisBroker)
        assert s.backend is b.backend  # one connection pool and bus per URL and process
    finally:
        s.close()


def test_keys_stay_under_the_prefix(redis_server, store):
    before = set(store.backend.client.keys("*"))
    t = contract.now()
    store.apply([contract.pub("room:k", "m1"),
                 ("push", "ann", "p1", t, "1", "promo", t + 60_000, {"promo": (5, 60.0)})])
    store.ack("ann", "p1", contract.now())
    store.records("ann", None, 10, contract.now())
    new = set(store.backend.client.keys("*")) - before
    prefix = store.backend.prefix.encode()
    assert new and all(k.startswith(prefix) for k in new), new
    ttl = store.backend.client.pttl(prefix + b"h:room:k")
    assert 0 < ttl <= 3600 * 1000  # a channel's history expires once idle for history_ttl
