"""Every op and every error path of docs/protocol.md, with websocket-client.

Each error test ends with a ping round trip (`expect_error` does it): an error never closes
the connection.
"""

from __future__ import annotations

import json
import time

import pytest

from .helpers import Closed

pytestmark = pytest.mark.usefixtures("close_clients")


def _channel(name: str) -> str:
    """A room name unique to one test run, so module-shared servers stay independent."""
    return f"room:{name}-{time.monotonic_ns()}"


# -- welcome and identity ------------------------------------------------------------------


def test_welcome_names_the_user(rt):
    alice = rt.connect("alice")
    w = alice.welcome
    assert w["op"] == "welcome"
    assert w["user"] == "alice"
    assert isinstance(w["conn"], str) and w["conn"]
    assert abs(w["server_time"] - time.time() * 1000) < 60_000  # milliseconds, not seconds
    assert w["demo"] is True  # no --api-key on this server
    other = rt.connect("alice")
    assert other.welcome["conn"] != w["conn"]  # one id per connection, not per user


def test_welcome_anonymous(rt):
    anon = rt.connect()
    assert anon.welcome["op"] == "welcome"
    assert anon.welcome["user"] is None
    anon.sync()


@pytest.mark.parametrize("token", ["garbage", "a.b", "x" * 300])
def test_invalid_token_is_closed_4401(rt, token):
    client = rt.connect(token=token, read_welcome=False)
    with pytest.raises(Closed) as info:
        client.recv()
    assert info.value.code == 4401
    assert info.value.reason.startswith("unauthorized"), info.value.reason


def test_tampered_token_is_closed_4401(rt):
    token = rt.mint("alice")
    sig = token.rsplit(".", 1)[1]
    forged = rt.mint("mallory").rsplit(".", 1)[0] + "." + sig  # alice's signature, other body
    client = rt.connect(token=forged, read_welcome=False)
    with pytest.raises(Closed) as info:
        client.recv()
    assert info.value.code == 4401
    rt.connect(token=token).sync()  # the genuine one still works


# -- ops and their replies -----------------------------------------------------------------


def test_ping_echoes_t_and_id(rt):
    c = rt.connect("alice")
    reply = c.request("ping", id="p-1", t=12345.5)
    assert reply["op"] == "pong"
    assert reply["id"] == "p-1"
    assert reply["t"] == 12345.5
    assert abs(reply["server_time"] - time.time() * 1000) < 60_000


@pytest.mark.parametrize("rid", [7, "abc", 1.5, True])
def test_reply_echoes_any_scalar_id(rt, rid):
    c = rt.connect("alice")
    assert c.request("ping", id=rid, t=1)["id"] == rid
    ch = _channel("ids")
    reply = c.request("subscribe", id=rid, channel=ch)
    assert (reply["op"], reply["id"], reply["channel"]) == ("ok", rid, ch)


def test_reply_without_id_has_null_id(rt):
    c = rt.connect("alice")
    c.send({"op": "ping", "t": 3})
    reply = c.recv()
    assert reply["op"] == "pong" and reply["id"] is None and reply["t"] == 3
    c.send({"op": "nope"})
    reply = c.recv()
    assert reply["op"] == "error" and reply["id"] is None and reply["code"] == "unknown_op"


def test_subscribe_publish_message_fields(rt):
    ch = _channel("fields")
    alice, bob = rt.connect("alice"), rt.connect("bob")
    sub = bob.request("subscribe", id="s", channel=ch)
    assert sub == {"op": "ok", "id": "s", "channel": ch, "offset": sub["offset"]}, sub
    assert isinstance(sub["offset"], int)

    before = time.time() * 1000
    pub = alice.request("publish", id="p", channel=ch, data={"text": "hi", "n": [1, 2]})
    assert pub["op"] == "ok" and pub["id"] == "p" and pub["channel"] == ch, pub
    assert isinstance(pub["msg"], str) and pub["msg"]
    assert pub["offset"] > sub["offset"]

    msg = bob.wait_for(lambda f: f.get("op") == "message")
    assert msg["channel"] == ch
    assert msg["data"] == {"text": "hi", "n": [1, 2]}
    assert msg["msg"] == pub["msg"]
    assert msg["offset"] == pub["offset"]
    assert msg["from"] == "alice"
    assert before - 60_000 < msg["ts"] < time.time() * 1000 + 60_000


def test_offsets_grow_and_subscribe_reports_last(rt):
    ch = _channel("offsets")
    alice = rt.connect("alice")
    offsets = [alice.ok("publish", channel=ch, data=i)["offset"] for i in range(3)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3, offsets
    late = rt.connect("bob")
    assert late.ok("subscribe", channel=ch)["offset"] == offsets[-1]


@pytest.mark.parametrize("since", [None, 0])
def test_subscribe_accepts_since(rt, since):
    c = rt.connect("alice")
    reply = c.ok("subscribe", channel=_channel("since"), since=since)
    assert isinstance(reply["offset"], int)


def test_any_json_data_round_trips(rt):
    ch = _channel("data")
    alice, bob = rt.connect("alice"), rt.connect("bob")
    bob.ok("subscribe", channel=ch)
    values = ["text", 0, -1.25, None, False, [], {}, {"nested": {"deep": [None, "é✓"]}}]
    msgs = [alice.ok("publish", channel=ch, data=v)["msg"] for v in values]
    got = {}
    while len(got) < len(values):
        frame = bob.wait_for(lambda f: f.get("op") == "message")
        got[frame["msg"]] = frame["data"]
    assert [got[m] for m in msgs] == values


def test_unsubscribe_stops_delivery(rt):
    ch = _channel("unsub")
    alice, bob = rt.connect("alice"), rt.connect("bob")
    bob.ok("subscribe", channel=ch)
    assert bob.request("unsubscribe", id="u", channel=ch) == {"op": "ok", "id": "u",
                                                              "channel": ch}
    alice.ok("publish", channel=ch, data="after")
    # A still-subscribed witness proves the fan-out happened before we check bob.
    witness = rt.connect("carol")
    witness.ok("subscribe", channel=ch)
    alice.ok("publish", channel=ch, data="after2")
    witness.wait_for(lambda f: f.get("data") == "after2")
    assert [f for f in bob.sync() if f.get("op") == "message"] == []


def test_publish_without_subscribing_is_allowed(rt):
    ch = _channel("nosub")
    alice = rt.connect("alice")
    alice.ok("publish", channel=ch, data=1)
    assert [f for f in alice.sync() if f.get("op") == "message"] == []


def test_anonymous_may_subscribe_and_presence_sys(rt):
    anon = rt.connect()
    assert anon.ok("subscribe", channel="sys:announcements")["channel"] == "sys:announcements"
    reply = anon.ok("presence", channel="sys:announcements")
    assert reply["channel"] == "sys:announcements"
    assert reply["connections"] >= 1


def test_user_may_subscribe_own_user_channel(rt):
    alice = rt.connect("alice")
    alice.ok("subscribe", channel="user:alice")


def test_presence_reply(rt):
    ch = _channel("presence")
    alice1, alice2, bob = rt.connect("alice"), rt.connect("alice"), rt.connect("bob")
    for c in (alice1, alice2, bob):
        c.ok("subscribe", channel=ch)
    reply = bob.request("presence", id="pr", channel=ch)
    assert reply["op"] == "ok" and reply["id"] == "pr" and reply["channel"] == ch
    assert sorted(reply["members"]) == ["alice", "bob"]  # alice's two tabs: listed once
    assert reply["count"] == 2
    assert reply["connections"] == 3


def test_ack_of_unknown_message_is_not_found(rt):
    alice = rt.connect("alice")
    pub = alice.ok("publish", channel=_channel("ack"), data="x")  # a room message
    for msg in ("no-such-message", pub["msg"]):  # neither is a personal message of alice's
        reply = alice.request("ack", id="a", msg=msg)
        assert reply["id"] == "a"
        alice.expect_error(reply, "not_found")


def test_anonymous_ack_is_unauthorized(rt):
    anon = rt.connect()
    anon.expect_error(anon.request("ack", msg="m1"), "unauthorized")


# -- error paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "{\"op\": \"ping\"", "[1, 2]", "42", "\"ping\""])
def test_bad_json(rt, text):
    c = rt.connect("alice")
    c.send_text(text)
    reply = c.recv()
    assert reply["id"] is None
    c.expect_error(reply, "bad_json")


def test_binary_frame_refused(rt):
    c = rt.connect("alice")
    c.send_binary(json.dumps({"op": "ping", "id": 1, "t": 1}).encode())
    reply = c.recv()
    assert reply.get("op") == "error", reply  # not a pong: binary is never interpreted
    c.expect_error(reply, "binary_not_supported")


@pytest.mark.parametrize("msg", [{"id": 5}, {"op": "shout", "id": 5}, {"op": 3, "id": 5},
                                 {"op": None, "id": 5}, {"op": "PING", "id": 5}])
def test_unknown_op(rt, msg):
    c = rt.connect("alice")
    c.send(msg)
    reply = c.reply_to(5)
    c.expect_error(reply, "unknown_op")


@pytest.mark.parametrize("op,fields,field", [
    ("subscribe", {}, "channel"),
    ("subscribe", {"channel": 5}, "channel"),
    ("subscribe", {"channel": ["room:a"]}, "channel"),
    ("subscribe", {"channel": "room:a", "since": "yesterday"}, "since"),
    ("unsubscribe", {}, "channel"),
    ("publish", {"channel": "room:a"}, "data"),
    ("publish", {"data": 1}, "channel"),
    ("publish", {"channel": None, "data": 1}, "channel"),
    ("presence", {}, "channel"),
    ("presence", {"channel": {"x": 1}}, "channel"),
    ("ping", {"t": "noon"}, "t"),
    ("ack", {}, "msg"),
])
def test_bad_request_names_the_field(rt, op, fields, field):
    c = rt.connect("alice")
    reply = c.request(op, **fields)
    assert field in reply.get("reason", ""), reply
    c.expect_error(reply, "bad_request")


@pytest.mark.parametrize("rid", [[1], {"n": 1}])
def test_non_scalar_id_is_a_bad_request(rt, rid):
    c = rt.connect("alice")
    c.send({"op": "ping", "id": rid, "t": 1})
    reply = c.recv()
    assert reply["id"] is None and "id" in reply.get("reason", ""), reply
    c.expect_error(reply, "bad_request")


@pytest.mark.parametrize("channel", [
    "", "lobby", "room:", "room:has space", "room:slash/no", "room:ü", "chat:x", "ROOM:x",
    "room:" + "x" * 124, "sys:" + "x" * 125,  # 129 characters
])
def test_bad_channel(rt, channel):
    c = rt.connect("alice")
    for op, extra in (("subscribe", {}), ("publish", {"data": 1}), ("presence", {})):
        reply = c.request(op, channel=channel, **extra)
        c.expect_error(reply, "bad_channel")


@pytest.mark.parametrize("prefix", ["room:", "sys:"])
def test_longest_channel_name_is_fine(rt, prefix):
    # "Channel names: 1-128 characters", the prefix included.
    c = rt.connect("alice")
    name = prefix + ("a-Z_0.9:@" * 15)[:128 - len(prefix)]
    assert len(name) == 128
    assert c.ok("subscribe", channel=name)["channel"] == name
    c.expect_error(c.request("subscribe", channel=name + "x"), "bad_channel")


def test_forbidden_other_users_channel(rt):
    alice = rt.connect("alice")
    reply = alice.request("subscribe", channel="user:bob")
    assert "user:bob" in reply.get("reason", "") or reply.get("channel") == "user:bob", reply
    alice.expect_error(reply, "forbidden")


@pytest.mark.parametrize("channel", ["user:alice", "user:bob", "sys:announcements"])
def test_forbidden_publish_to_server_channels(rt, channel):
    alice = rt.connect("alice")
    listener = rt.connect() if channel.startswith("sys:") else rt.connect(channel[5:])
    listener.ok("subscribe", channel=channel)
    reply = alice.request("publish", channel=channel, data="spoof")
    alice.expect_error(reply, "forbidden")
    assert [f for f in listener.sync() if f.get("op") == "message"] == []  # really dropped


@pytest.mark.parametrize("op,extra", [("subscribe", {}), ("publish", {"data": 1}),
                                      ("presence", {})])
def test_anonymous_refused_on_rooms(rt, op, extra):
    # "unauthorized: the op needs an authenticated user" (forbidden is for users the
    # channel policy refuses).
    anon = rt.connect()
    reply = anon.request(op, channel=_channel("anon"), **extra)
    anon.expect_error(reply, "unauthorized")


def test_too_large_publish(rt):
    ch = _channel("big")
    alice, bob = rt.connect("alice"), rt.connect("bob")
    bob.ok("subscribe", channel=ch)
    fits = "x" * 900  # well under --max-publish-size 1024 once JSON-encoded
    alice.ok("publish", channel=ch, data=fits)
    reply = alice.request("publish", channel=ch, data="y" * 2000)
    alice.expect_error(reply, "too_large")
    got = [f["data"] for f in bob.sync() if f.get("op") == "message"]
    if not got:  # the first one may still be on its way
        got = [bob.wait_for(lambda f: f.get("op") == "message")["data"]]
        got += [f["data"] for f in bob.sync() if f.get("op") == "message"]
    assert got == [fits]


@pytest.mark.parametrize("user", [None, "alice"])
def test_too_many_subscriptions(rt, user):
    # --max-subscriptions 5: five channels of the client's choosing, then no more.
    c = rt.connect(user)
    prefix = "sys:" if user is None else "room:"
    channels = [f"{prefix}many{i}-{time.monotonic_ns()}" for i in range(6)]
    for ch in channels[:5]:
        c.ok("subscribe", channel=ch)
    reply = c.request("subscribe", channel=channels[5])
    assert "5" in reply.get("reason", ""), reply
    c.expect_error(reply, "too_many_subscriptions")
    # Freeing one slot makes room again.
    c.ok("unsubscribe", channel=channels[0])
    c.ok("subscribe", channel=channels[5])


def test_resubscribing_does_not_use_a_slot(rt):
    c = rt.connect("alice")
    ch = _channel("same")
    for _ in range(8):  # more times than --max-subscriptions
        c.ok("subscribe", channel=ch)


def test_not_subscribed(rt):
    c = rt.connect("alice")
    ch = _channel("never")
    c.expect_error(c.request("unsubscribe", channel=ch), "not_subscribed")
    c.ok("subscribe", channel=ch)
    c.ok("unsubscribe", channel=ch)
    c.expect_error(c.request("unsubscribe", channel=ch), "not_subscribed")


def test_many_errors_in_a_row_keep_the_connection(rt):
    c = rt.connect("alice")
    for text in ["{", "[]", json.dumps({"op": "zap"}), json.dumps({"op": "subscribe"})]:
        c.send_text(text)
    codes = [c.recv()["code"] for _ in range(4)]
    assert codes == ["bad_json", "bad_json", "unknown_op", "bad_request"]
    c.sync()
