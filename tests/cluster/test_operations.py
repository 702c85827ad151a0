"""Server-side operations across processes on a real Redis: asked of one process (its HTTP
API, the server-side API of another language's backend), done on the user's connections of
the other, which is told."""

from __future__ import annotations

import json

import pytest
from realtime.helpers import Closed

from .conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def api(server, path: str, body: dict) -> dict:
    status, _, raw = server.http("POST", path, body, AUTH)
    assert status == 200, raw
    return json.loads(raw)


def test_subscribe_unsubscribe_close_channel_and_disconnect_reach_every_process(pair):
    a, b = pair
    ann_b = b.connect("ann")  # ann has a tab on each process
    ann_a = a.connect("ann")
    bob_b = b.connect("bob")

    api(a, "/api/subscribe", {"user": "ann", "channel": "sys:ops"})
    for tab in (ann_a, ann_b):
        event = tab.wait_for(lambda f: f.get("op") == "subscribed")
        assert (event["channel"], event["server"]) == ("sys:ops", True)
    api(a, "/api/publish", {"channel": "sys:ops", "data": "for ann"})
    for tab in (ann_a, ann_b):
        assert tab.wait_for(lambda f: f.get("op") == "message")["data"] == "for ann"

    api(b, "/api/unsubscribe", {"user": "ann", "channel": "sys:ops", "reason": "done"})
    for tab in (ann_a, ann_b):
        event = tab.wait_for(lambda f: f.get("op") == "unsubscribed")
        assert event == {"op": "unsubscribed", "channel": "sys:ops", "reason": "done"}

    for client in (ann_b, bob_b):
        client.ok("subscribe", channel="room:ops")
    api(a, "/api/close_channel", {"channel": "room:ops"})
    for client in (ann_b, bob_b):
        event = client.wait_for(lambda f: f.get("op") == "unsubscribed")
        assert (event["channel"], event["reason"]) == ("room:ops", "channel closed")
    assert a.http("GET", "/api/presence?channel=room:ops", headers=AUTH)[0] == 200

    api(a, "/api/disconnect", {"user": "ann", "code": 4005, "reason": "bye"})
    for tab in (ann_a, ann_b):
        with pytest.raises(Closed) as info:
            while True:
                tab.recv()
        assert (info.value.code, info.value.reason) == (4005, "bye")
    bob_b.sync()  # bob stays


def test_revoking_a_users_tokens_closes_them_everywhere_and_refuses_the_old_ones(pair):
    a, b = pair
    token = b.mint("rita")
    rita = b.connect(token=token)
    api(a, "/api/users/rita/revoke", {})
    with pytest.raises(Closed) as info:
        while True:
            rita.recv()
    assert info.value.code == 4401
    with pytest.raises(Closed) as info:
        b.connect(token=token, read_welcome=False).recv()
    assert info.value.code == 4401 and "revoked" in info.value.reason
