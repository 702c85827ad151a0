"""/metrics (Prometheus text, parsed with prometheus_client's parser) and /healthz."""

from __future__ import annotations

import json
import math
import time

import pytest

from .helpers import (
    M_BYTES_IN,
    M_BYTES_OUT,
    M_CHANNEL_SUBS,
    M_CLOSES,
    M_CONNECTIONS,
    M_FANOUT,
    M_MSG_IN,
    M_MSG_OUT,
    M_SLOW_DROPS,
    M_USERS,
    Closed,
)

pytestmark = pytest.mark.usefixtures("close_clients")
WS = {"route": "/ws"}  # wsapp_connections is labelled by route: "/ws" and "all"


def _channel(name: str) -> str:
    return f"room:{name}-{time.monotonic_ns()}"


def _settled(rt):
    """Metrics once no /ws connection is left from earlier tests (all of them close theirs)."""
    m = rt.wait_metric(lambda m: m.get(M_CONNECTIONS, **WS) == 0)
    assert m.get(M_CONNECTIONS, **WS) == 0, "connections left over from earlier tests"
    return m


def test_healthz(rt):
    status, _, _ = rt.http("GET", "/healthz")
    assert status == 200


def test_metrics_is_valid_prometheus_text_with_every_family(rt):
    c = rt.connect("alice")
    ch = _channel("families")
    c.ok("subscribe", channel=ch)
    c.ok("publish", channel=ch, data="x")
    c.wait_for(lambda f: f.get("op") == "message")

    status, headers, body = rt.http("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain"), headers
    m = rt.metrics()  # parses, or raises
    types = {f.name: f.type for f in m.families}
    # The parser names counter families without the _total suffix.
    expected = {
        "wsapp_connections": "gauge", "wsapp_users_online": "gauge",
        "wsapp_messages_in": "counter", "wsapp_messages_out": "counter",
        "wsapp_bytes_in": "counter", "wsapp_bytes_out": "counter",
        "wsapp_fanout_seconds": "histogram", "wsapp_slow_consumer_drops": "counter",
        "wsapp_closes": "counter", "wsapp_channel_subscribers": "gauge",
    }
    for name, kind in expected.items():
        assert types.get(name) == kind, (name, types.get(name), sorted(types))
    for name in (M_MSG_IN, M_MSG_OUT, M_BYTES_IN, M_BYTES_OUT, M_SLOW_DROPS):
        assert m.get(name) is not None and m.get(name) >= 0, name
    assert m.get(M_MSG_IN) >= 2 and m.get(M_BYTES_IN) > 0

    # A well-formed histogram: cumulative buckets ending in +Inf == _count.
    buckets = sorted(((float(le), v) for le, v in m.labelled(M_FANOUT + "_bucket", "le").items()),
                     key=lambda b: b[0])
    assert buckets and math.isinf(buckets[-1][0])
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert buckets[-1][1] == m.get(M_FANOUT + "_count") >= 1
    assert m.get(M_FANOUT + "_sum") >= 0


def test_traffic_connections_users_and_channels(rt):
    base = _settled(rt)
    ch = _channel("traffic")
    alice, bob, anon = rt.connect("alice"), rt.connect("bob"), rt.connect()
    for c in (alice, bob):
        c.ok("subscribe", channel=ch)
    data = {"text": "y" * 500}
    sent = [alice.ok("publish", channel=ch, data=data) for _ in range(3)]
    got = [bob.wait_for(lambda f: f.get("op") == "message") for _ in sent]
    assert [g["msg"] for g in got] == [s["msg"] for s in sent]

    m = rt.wait_metric(lambda m: m.get(M_CONNECTIONS, **WS) == 3
                       and m.get(M_CHANNEL_SUBS, channel=ch) == 2)
    assert m.get(M_CONNECTIONS, **WS) == 3
    assert m.get(M_CONNECTIONS, route="all") >= 3
    assert m.get(M_USERS) == 2  # alice and bob; anonymous is nobody
    assert m.get(M_CHANNEL_SUBS, channel=ch) == 2
    # In: 2 subscribes + 3 publishes at least. Out: 3 welcomes, the replies, 3 x 2 messages.
    assert m.get(M_MSG_IN) - base.get(M_MSG_IN) >= 5
    assert m.get(M_MSG_OUT) - base.get(M_MSG_OUT) >= 3 + 5 + 6
    publish_bytes = 3 * len(json.dumps({"op": "publish", "channel": ch, "data": data}))
    assert m.get(M_BYTES_IN) - base.get(M_BYTES_IN) >= publish_bytes
    assert m.get(M_BYTES_OUT) - base.get(M_BYTES_OUT) >= 6 * 500
    assert m.get(M_FANOUT + "_count") - base.get(M_FANOUT + "_count") >= 3

    # A clean close and an abrupt drop: both counted by code, every gauge back down.
    alice.close()
    bob.abort()
    anon.close()
    m = rt.wait_metric(lambda m: m.get(M_CONNECTIONS, **WS) == 0
                       and m.get(M_CHANNEL_SUBS, channel=ch) is None)
    assert m.get(M_CONNECTIONS, **WS) == 0
    assert m.get(M_USERS) == 0
    assert m.get(M_CHANNEL_SUBS, channel=ch) is None
    closes = {code: v - base.get(M_CLOSES, code=code, default=0)
              for code, v in m.labelled(M_CLOSES, "code").items()}
    assert closes.get("1000", 0) >= 2, closes
    assert closes.get("1006", 0) >= 1, closes  # the drop: no close frame


def test_bytes_in_counts_utf8_bytes(rt):
    c = rt.connect("alice")
    base = rt.metrics()
    text = json.dumps({"op": "publish", "id": 1, "channel": _channel("utf8"),
                       "data": "€" * 300}, ensure_ascii=False)  # 902 bytes: fits
    c.send_text(text)
    assert c.reply_to(1)["op"] == "ok"
    m = rt.metrics()
    assert m.get(M_BYTES_IN) - base.get(M_BYTES_IN) >= len(text.encode("utf-8")), \
        (m.get(M_BYTES_IN) - base.get(M_BYTES_IN), len(text), len(text.encode("utf-8")))


def test_unauthorized_close_is_counted(rt):
    base = rt.metrics()
    client = rt.connect(token="not-a-token", read_welcome=False)
    with pytest.raises(Closed):
        client.recv()
    m = rt.wait_metric(lambda m: m.get(M_CLOSES, code="4401", default=0) >
                       base.get(M_CLOSES, code="4401", default=0))
    assert m.get(M_CLOSES, code="4401") == base.get(M_CLOSES, code="4401", default=0) + 1


def test_channel_gauge_is_bounded_and_sums_up(rt):
    _settled(rt)
    big = f"sys:big-{time.monotonic_ns()}"
    small = [f"sys:small{i}-{time.monotonic_ns()}" for i in range(30)]
    # Five subscriptions per connection (--max-subscriptions 5); big gets 3 subscribers.
    plan = [[big, *small[0:4]], [big, *small[4:8]], [big, *small[8:12]]]
    plan += [small[i:i + 5] for i in range(12, 30, 5)]
    for channels in plan:
        c = rt.connect()  # anonymous: no channels but the ones it asks for
        for ch in channels:
            c.ok("subscribe", channel=ch)
    m = rt.metrics()
    by_channel = m.labelled(M_CHANNEL_SUBS, "channel")
    assert by_channel[big] == 3
    assert sum(by_channel.values()) == 3 + 30  # named ones plus "other": every subscription
    # 31 channels: the label set is capped, the rest summed under "other".
    assert len(by_channel) < 31, sorted(by_channel)
    assert by_channel.get("other", 0) > 0, by_channel
