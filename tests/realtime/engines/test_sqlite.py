"""The SQLite store on a real file: offsets, history bounds, push records, quotas, acks."""

import json
import time

import pytest

from wsapp.realtime.engines.sqlite import (
    ACKED,
    DELIVERED,
    EXPIRED,
    PENDING,
    SUPPRESSED,
    SQLiteStore,
    sqlite_path,
)
from wsapp.realtime.limits import parse_quotas


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(f"sqlite:///{tmp_path}/t.db", history_size=5, history_ttl=3600)
    yield s
    s.close()


def now():
    return int(time.time() * 1000)


def pub(channel, msg, data=1):
    return ("publish", channel, msg, None, now(), json.dumps(data))


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


def test_history_by_age(tmp_path):
    s = SQLiteStore(f"sqlite:///{tmp_path}/age.db", history_size=100, history_ttl=1)
    old = ("publish", "room:o", "m1", None, now() - 5000, "1")
    s.apply([old, pub("room:o", "m2")])
    assert [m["msg"] for m in s.history("room:o", 0, 10)["messages"]] == ["m2"]
    s.close()


def test_a_failed_batch_changes_nothing(store):
    store.apply([pub("room:x", "dup")])
    with pytest.raises(ValueError, match="unknown store job"):
        store.apply([pub("room:x", "ok"), ("bogus",)])
    assert store.last_offset("room:x") == 1


def test_push_lifecycle(store):
    t = now()
    [(status, reason, offset)] = store.apply(
        [("push", "ann", "p1", t, '{"hi":1}', None, t + 60_000, {})])
    assert (status, reason, offset) == (PENDING, None, 1)
    assert store.pending("ann", now())[0]["msg"] == "p1"
    store.apply([("delivered", ["p1"], now())])
    [record] = store.records("ann", None, 10, now())
    assert record["status"] == DELIVERED and record["attempts"] == 1 and record["delivered"]
    assert store.pending("ann", now())[0]["msg"] == "p1"  # delivered but not acked: still due
    assert store.ack("bob", "p1", now()) is None  # not bob's
    assert store.ack("ann", "p1", now()) == ACKED
    assert store.pending("ann", now()) == []
    assert store.records("ann", ACKED, 10, now())[0]["acked"]


def test_expiry(store):
    t = now()
    store.apply([("push", "ann", "p1", t, "1", None, t + 50, {})])
    time.sleep(0.1)
    assert store.pending("ann", now()) == []
    assert store.records("ann", None, 10, now())[0]["status"] == EXPIRED
    assert store.ack("ann", "p1", now()) == EXPIRED


def test_quotas_per_category_and_total(store):
    quotas = parse_quotas("promo=2/day,total=3/day")
    t = now()

    def push(i, category):
        job = ("push", "ann", f"p{i}", t, "1", category, t + 60_000, quotas)
        return store.apply([job])[0][0]

    assert [push(1, "promo"), push(2, "promo"), push(3, "promo")] == [
        PENDING, PENDING, SUPPRESSED]
    assert push(4, None) == PENDING  # total: 3 allowed, suppressed ones do not count
    assert push(5, "news") == SUPPRESSED
    suppressed = store.records("ann", SUPPRESSED, 10, now())
    assert {r["msg"] for r in suppressed} == {"p3", "p5"}
    assert "promo=2/day" in [r for r in suppressed if r["msg"] == "p3"][0]["reason"]
    assert "total=3/day" in [r for r in suppressed if r["msg"] == "p5"][0]["reason"]
    # another user has their own budget
    job = ("push", "bob", "q1", t, "1", "promo", t + 60_000, quotas)
    assert store.apply([job])[0][0] == PENDING


def test_quota_batch_is_exact(store):
    quotas = parse_quotas("total=5/hour")
    t = now()
    jobs = [("push", "ann", f"p{i}", t, "1", None, t + 60_000, quotas) for i in range(20)]
    statuses = [r[0] for r in store.apply(jobs)]
    assert statuses.count(PENDING) == 5 and statuses.count(SUPPRESSED) == 15


def test_data_survives_reopen(tmp_path):
    url = f"sqlite:///{tmp_path}/re.db"
    s = SQLiteStore(url)
    t = now()
    s.apply([("push", "ann", "p1", t, '"x"', None, t + 60_000, {}), pub("room:r", "m1")])
    s.close()
    s2 = SQLiteStore(url)
    assert s2.pending("ann", now())[0]["data"] == "x" and s2.last_offset("room:r") == 1
    s2.close()


@pytest.mark.parametrize("url,path", [
    ("sqlite:///rel/x.db", "rel/x.db"),
    ("sqlite:////abs/x.db", "/abs/x.db"),
    ("sqlite:///:memory:", ":memory:"),
])
def test_sqlite_urls(url, path):
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://x.db", "sqlite:///"])
def test_bad_sqlite_urls(url):
    with pytest.raises(ValueError):
        sqlite_path(url)


@pytest.mark.parametrize("spec", ["promo", "promo=3", "promo=x/day", "promo=3/fortnight",
                                  "=3/day", "promo=-1/day"])
def test_bad_quota_specs(spec):
    with pytest.raises(ValueError):
        parse_quotas(spec)


def test_quota_spec():
    assert parse_quotas(" promo=3/day, total=20/days ,x=1/minute") == {
        "promo": (3, 86400.0), "total": (20, 86400.0), "x": (1, 60.0)}


def test_ack_before_the_delivered_update_still_records_delivery(store):
    t = now()
    store.apply([("push", "ann", "p1", t, "1", None, t + 60_000, {})])
    assert store.ack("ann", "p1", now()) == ACKED  # no "delivered" job ran yet
    store.apply([("delivered", ["p1"], now())])  # arrives late: must not undo the ack
    [record] = store.records("ann", None, 10, now())
    assert record["status"] == ACKED and record["delivered"] and record["attempts"] >= 1
