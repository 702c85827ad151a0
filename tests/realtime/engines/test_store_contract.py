"""The Store contract (engines/base.py), run unchanged against the memory, SQLite and Redis
stores: offsets, bounded history, push records and their lifecycle, quotas, acks."""

from __future__ import annotations

import json
import time

import pytest

from wsapp.realtime.engines.base import (
    ACKED,
    DELIVERED,
    EXPIRED,
    PENDING,
    SUPPRESSED,
    Replay,
)
from wsapp.realtime.limits import parse_quotas


def now() -> int:
    return int(time.time() * 1000)


def pub(channel, msg, data=1, ts=None, key=None):
    job = ("publish", channel, msg, None, now() if ts is None else ts, json.dumps(data))
    return job if key is None else (*job, key)


def push(user, msg, category=None, quotas=None, ttl_ms=60_000, data="1", key=None):
    t = now()
    job = ("push", user, msg, t, data, category, t + ttl_ms, quotas or {})
    return job if key is None else (*job, key)


def test_offsets_are_per_channel_and_monotonic(store):
    assert store.apply([pub("room:a", "m1"), pub("room:b", "m2"), pub("room:a", "m3")]) == [
        1, 1, 2]
    assert store.apply([pub("room:a", "m4")]) == [3]
    assert store.last_offset("room:a") == 3 and store.last_offset("room:none") == 0


def test_history_is_bounded_and_says_what_it_kept(store):
    store.apply([pub("room:h", f"m{i}", i) for i in range(1, 9)])  # 8 messages, keep 5
    h = store.history("room:h", 0, 100)
    assert [m["offset"] for m in h["messages"]] == [4, 5, 6, 7, 8]
    assert h["first_offset"] == 4 and h["last_offset"] == 8
    assert [m["data"] for m in store.history("room:h", 6, 100)["messages"]] == [7, 8]
    assert store.history("room:h", 5, 1)["messages"][0]["offset"] == 6
    first = h["messages"][0]
    assert (first["channel"], first["msg"], first["from"]) == ("room:h", "m4", None)


def test_an_empty_channel_says_where_history_would_start(store):
    h = store.history("room:never", 0, 10)
    assert h == {"messages": [], "first_offset": 1, "last_offset": 0}


def test_history_by_age(store_engines):
    store = store_engines.open("store", history_size=100, history_ttl=1)
    store.apply([pub("room:o", "m1", ts=now() - 5000), pub("room:o", "m2")])
    assert [m["msg"] for m in store.history("room:o", 0, 10)["messages"]] == ["m2"]
    assert store.last_offset("room:o") == 2  # offsets never go back, whatever is dropped


def test_an_unknown_job_refuses_the_batch_before_anything_is_written(store):
    store.apply([pub("room:x", "one")])
    with pytest.raises(ValueError, match="unknown store job"):
        store.apply([pub("room:x", "ok"), ("bogus",)])
    assert store.last_offset("room:x") == 1


def test_push_lifecycle(store):
    [(status, reason, offset)] = store.apply([push("ann", "p1", data='{"hi":1}')])
    assert (status, reason, offset) == (PENDING, None, 1)
    [due] = store.pending("ann", now())
    assert (due["msg"], due["offset"], due["data"]) == ("p1", 1, {"hi": 1})
    store.apply([("delivered", ["p1"], now())])
    [record] = store.records("ann", None, 10, now())
    assert record["status"] == DELIVERED and record["attempts"] == 1 and record["delivered"]
    assert store.pending("ann", now())[0]["msg"] == "p1"  # delivered but not acked: still due
    assert store.ack("bob", "p1", now()) is None  # not bob's
    assert store.ack("ann", "nope", now()) is None
    assert store.ack("ann", "p1", now()) == ACKED
    assert store.ack("ann", "p1", now()) == ACKED  # acking twice changes nothing
    assert store.pending("ann", now()) == []
    assert store.records("ann", ACKED, 10, now())[0]["acked"]
    assert store.history("user:ann", 0, 10)["messages"][0]["msg"] == "p1"


def test_expiry(store):
    store.apply([push("ann", "p1", ttl_ms=50)])
    time.sleep(0.1)
    assert store.pending("ann", now()) == []
    assert store.records("ann", None, 10, now())[0]["status"] == EXPIRED
    assert store.ack("ann", "p1", now()) == EXPIRED


def test_quotas_per_category_and_total(store):
    quotas = parse_quotas("promo=2/day,total=3/day")

    def status(i, category):
        return store.apply([push("ann", f"p{i}", category, quotas)])[0][0]

    assert [status(1, "promo"), status(2, "promo"), status(3, "promo")] == [
        PENDING, PENDING, SUPPRESSED]
    assert status(4, None) == PENDING  # total: 3 allowed, suppressed ones do not count
    assert status(5, "news") == SUPPRESSED
    suppressed = store.records("ann", SUPPRESSED, 10, now())
    assert {r["msg"] for r in suppressed} == {"p3", "p5"}
    assert "promo=2/day" in [r for r in suppressed if r["msg"] == "p3"][0]["reason"]
    assert "total=3/day" in [r for r in suppressed if r["msg"] == "p5"][0]["reason"]
    assert all(r["offset"] is None for r in suppressed)  # never appended to user:ann
    assert store.apply([push("bob", "q1", "promo", quotas)])[0][0] == PENDING  # own budget


def test_quota_batch_is_exact(store):
    quotas = parse_quotas("total=5/hour")
    statuses = [r[0] for r in store.apply([push("ann", f"p{i}", None, quotas)
                                           for i in range(20)])]
    assert statuses.count(PENDING) == 5 and statuses.count(SUPPRESSED) == 15


def test_ack_before_the_delivered_update_still_records_delivery(store):
    store.apply([push("ann", "p1")])
    assert store.ack("ann", "p1", now()) == ACKED  # no "delivered" job ran yet
    store.apply([("delivered", ["p1"], now())])  # arrives late: must not undo the ack
    [record] = store.records("ann", None, 10, now())
    assert record["status"] == ACKED and record["delivered"] and record["attempts"] >= 1


def test_records_newest_first_with_their_fields(store):
    store.apply([push("ann", f"p{i}", data=json.dumps({"i": i})) for i in range(3)])
    records = store.records("ann", None, 10, now())
    assert [r["msg"] for r in records] == ["p2", "p1", "p0"]
    assert set(records[0]) == {"msg", "status", "reason", "category", "offset", "created",
                               "delivered", "acked", "expires", "attempts", "data"}
    assert [r["data"] for r in records] == [{"i": 2}, {"i": 1}, {"i": 0}]
    assert [r["msg"] for r in store.records("ann", None, 2, now())] == ["p2", "p1"]
    assert [m["data"] for m in store.pending("ann", now())] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_health_is_up(store):
    health = store.health()
    assert health["state"] == "up" and health["engine"] in ("memory", "sqlite", "redis")


def test_revocations_only_move_forward_per_user(store):
    assert store.revoked("ann") == 0
    store.revoke("ann", 2_000)
    store.revoke("ann", 1_000)  # an older revocation does not undo a newer one
    assert store.revoked("ann") == 2_000 and store.revoked("bob") == 0
    store.revoke("ann", 3_000)
    assert store.revoked("ann") == 3_000


# -- idempotency keys: a repeated key writes nothing and answers the first run's result ------


def test_a_repeated_publish_key_writes_nothing_and_answers_the_first_result(store):
    assert store.apply([pub("room:k", "m1", "first", key="k1")]) == [1]
    assert store.apply([pub("room:k", "m2", "again", key="k1")]) == [Replay("m1", 1)]
    assert store.last_offset("room:k") == 1
    assert [m["data"] for m in store.history("room:k", 0, 10)["messages"]] == ["first"]
    assert store.apply([pub("room:k", "m3", "no key")]) == [2]  # unkeyed jobs are not kept


def test_a_repeated_push_key_writes_no_record_and_counts_no_quota(store):
    quotas = parse_quotas("total=2/day")
    [first] = store.apply([push("ann", "p1", quotas=quotas, key="order-7")])
    assert first == (PENDING, None, 1)
    assert store.apply([push("ann", "p2", quotas=quotas, key="order-7")]) == [
        Replay("p1", (PENDING, None, 1))]
    assert [r["msg"] for r in store.records("ann", None, 10, now())] == ["p1"]
    assert [m["msg"] for m in store.pending("ann", now())] == ["p1"]
    # had the repeat counted, the quota of 2 would suppress this one
    assert store.apply([push("ann", "p3", quotas=quotas, key="order-8")])[0][0] == PENDING
    assert store.apply([push("ann", "p4", quotas=quotas, key="order-9")])[0][0] == SUPPRESSED


def test_a_suppressed_push_is_remembered_as_suppressed(store):
    quotas = parse_quotas("promo=0/day")
    [(status, reason, offset)] = store.apply([push("ann", "p1", "promo", quotas, key="k")])
    assert status == SUPPRESSED and offset is None
    assert store.apply([push("ann", "p2", "promo", quotas, key="k")]) == [
        Replay("p1", (SUPPRESSED, reason, None))]
    assert len(store.records("ann", None, 10, now())) == 1


def test_a_key_repeated_inside_one_batch_is_applied_once(store):
    results = store.apply([push("ann", "p1", key="k"), push("ann", "p2", key="k"),
                           pub("room:b", "m1", key="k"), pub("room:b", "m2", key="k")])
    assert results == [(PENDING, None, 1), Replay("p1", (PENDING, None, 1)), 1,
                       Replay("m1", 1)]


def test_keys_are_scoped_by_kind_and_target(store):
    results = store.apply([push("ann", "p1", key="k"), push("bob", "p2", key="k"),
                           pub("room:a", "m1", key="k"), pub("room:b", "m2", key="k")])
    assert results == [(PENDING, None, 1), (PENDING, None, 1), 1, 1]


def test_a_key_is_forgotten_after_key_ttl(store_engines):
    store = store_engines.open("store", key_ttl=0.3)
    assert store.apply([pub("room:t", "m1", key="k")]) == [1]
    assert store.apply([pub("room:t", "m2", key="k")]) == [Replay("m1", 1)]
    time.sleep(0.5)
    assert store.apply([pub("room:t", "m3", key="k")]) == [2]


def test_a_channel_may_keep_its_own_history(store):
    def kept(channel: str, msg: str, keep: tuple[int, int], ts: int | None = None) -> tuple:
        return ("publish", channel, msg, None, now() if ts is None else ts, "1", None, keep)

    store.apply([kept("room:own", f"o{i}", (2, 3_600_000)) for i in range(6)]
                + [pub("room:default", f"d{i}") for i in range(8)])
    assert [m["msg"] for m in store.history("room:own", 0, 10)["messages"]] == ["o4", "o5"]
    assert len(store.history("room:default", 0, 10)["messages"]) == 5  # the store's 5
    brief = (100, 1000)  # a second of history
    store.apply([kept("room:brief", "old", brief, now() - 5000), kept("room:brief", "new", brief)])
    assert [m["msg"] for m in store.history("room:brief", 0, 10)["messages"]] == ["new"]
