"""The inbox's RPC (wsapp/demo/inbox.py): the caller's own push records — acked ones too,
never what a quota suppressed — and nothing for a caller without a user."""

from __future__ import annotations

import json


def push(server, user: str, text: str, **extra) -> dict:
    status, _, body = server.http("POST", "/api/push", {"user": user, "data": {"text": text},
                                                     **extra})
    assert status in (200, 429), body
    return json.loads(body)


def test_the_inbox_rpc_lists_the_callers_records_acked_ones_too(demo):
    fay = demo.connect("fay")
    first = push(demo, "fay", "hello")
    delivered = fay.wait_for(lambda f: f.get("op") == "message")
    assert fay.ok("ack", msg=delivered["msg"])["status"] == "acked"
    second = push(demo, "fay", "again")
    records = fay.ok("rpc", method="inbox")["result"]
    assert [(r["msg"], r["status"], r["data"]) for r in records] == [
        (second["msg"], "delivered", {"text": "again"}),
        (first["msg"], "acked", {"text": "hello"})]  # newest first
    gus = demo.connect("gus")
    assert gus.ok("rpc", method="inbox")["result"] == []  # nobody else's


def test_what_a_quota_suppressed_never_reached_the_user_and_is_not_listed(demo):
    hal = demo.connect("hal")
    sent = push(demo, "hal", "promo 1", category="promo")
    suppressed = push(demo, "hal", "promo 2", category="promo")
    assert suppressed["status"] == "suppressed"
    assert [r["msg"] for r in hal.ok("rpc", method="inbox")["result"]] == [sent["msg"]]


def test_the_inbox_rpc_needs_a_user(demo):
    anonymous = demo.connect()
    reply = anonymous.request("rpc", method="inbox")
    anonymous.expect_error(reply, "unauthorized")
    assert "sign in" in reply["reason"]
