"""The app protocol parser and envelopes."""

import json

import pytest

from wsapp.realtime.messages import RequestError, dumps, error, message, ok, parse_request
from wsapp.realtime.policy import check_channel


@pytest.mark.parametrize("text,code", [
    ("not json", "bad_json"),
    ("[1,2]", "bad_json"),
    ('"str"', "bad_json"),
    ("{}", "unknown_op"),
    ('{"op":"dance"}', "unknown_op"),
    ('{"op":"subscribe"}', "bad_request"),
    ('{"op":"subscribe","channel":5}', "bad_request"),
    ('{"op":"publish","channel":"room:a"}', "bad_request"),
    ('{"op":"subscribe","channel":"room:a","since":-1}', "bad_request"),
    ('{"op":"subscribe","channel":"room:a","since":"x"}', "bad_request"),
    ('{"op":"subscribe","channel":"lobby"}', "bad_channel"),
    ('{"op":"subscribe","channel":"room:"}', "bad_channel"),
    ('{"op":"subscribe","channel":"room:a b"}', "bad_channel"),
    ('{"op":"ack"}', "bad_request"),
    ('{"op":"ping","id":{"a":1}}', "bad_request"),
    ('{"op":"subscribe","channel":"room:a\\n"}', "bad_channel"),
    ('{"op":"subscribe","channel":"Room:a"}', "bad_channel"),
    ('{"op":"publish","channel":"room:a","data":NaN}', "bad_json"),
    ('{"op":"publish","channel":"room:a","data":[Infinity]}', "bad_json"),
    ('{"op":"rpc"}', "bad_request"),
    ('{"op":"subscribe","channel":"room:a","since":9223372036854775808}', "bad_request"),
    ('{"op":"publish","channel":"room:a","data":"\\ud800"}', "bad_json"),
    ('{"op":"publish","channel":"room:a","data":"\\udfffx"}', "bad_json"),
    ("[" * 100000, "bad_json"),
    # numbers that overflow a double would go out as Infinity, which no strict parser takes
    ('{"op":"publish","channel":"room:a","data":1e999}', "bad_json"),
    ('{"op":"publish","channel":"room:a","data":[-1.5e400]}', "bad_json"),
    ('{"op":"ping","t":1e309}', "bad_json"),
    ('{"op":"ping","id":1e999}', "bad_json"),
])
def test_rejections_name_the_problem(text, code):
    with pytest.raises(RequestError) as exc:
        parse_request(text)
    assert exc.value.code == code and exc.value.reason


def test_request_id_is_kept_on_errors():
    with pytest.raises(RequestError) as exc:
        parse_request('{"op":"subscribe","id":7}')
    assert exc.value.request_id == 7


def test_surrogate_pairs_are_text():
    req = parse_request('{"op":"publish","channel":"room:a","data":"\\ud83d\\ude00"}')
    assert req["data"] == "\U0001F600"


def test_valid_requests():
    req = parse_request('{"op":"publish","channel":"room:x","data":{"a":[1]},"id":"r1"}')
    assert req["data"] == {"a": [1]} and req["id"] == "r1"
    assert parse_request('{"op":"subscribe","channel":"user:al.ice@x","since":0}')["since"] == 0
    assert parse_request('{"op":"ping","t":1}')["op"] == "ping"


def test_channel_namespaces():
    assert check_channel("room:a") == "room"
    assert check_channel("sys:dashboard") == "sys"
    assert check_channel("user:bob") == "user"
    assert check_channel("chat-2:general") == "chat-2"  # the app's own namespaces
    for bad in ("room:" + "x" * 124, "room:a\n", "\nroom:a", "room", 5, None):
        with pytest.raises(RequestError):
            check_channel(bad)


def test_envelopes_are_compact_json():
    assert json.loads(ok(1, channel="room:a")) == {"op": "ok", "id": 1, "channel": "room:a"}
    assert json.loads(error(None, "bad_json", "r"))["code"] == "bad_json"
    env = json.loads(message("room:a", 3, "m1", {"t": "é"}, "bob", 5))
    assert env == {"op": "message", "channel": "room:a", "offset": 3, "msg": "m1",
                   "data": {"t": "é"}, "from": "bob", "ts": 5}
    assert "é" in message("room:a", 3, "m1", "é", None, 5)  # not \\u-escaped


@pytest.mark.parametrize("ttl", [0, -1, 1e300, float("inf"), float("nan"), True, "60",
                                 367 * 86400])
def test_push_ttls_are_bounded(ttl):
    from wsapp.realtime.messages import check_ttl

    with pytest.raises(RequestError):
        check_ttl(ttl)
    assert check_ttl(86400) == 86400 and check_ttl(None) is None


def test_bad_json_says_which_constant_or_character():
    for text, said in (('{"op":"ping","t":NaN}', "NaN is not JSON"),
                       ('{"op":"ping","t":1e999}', "1e999 is not JSON"),
                       ('{"op":"ping","t":"\\ud800"}', "lone surrogate")):
        with pytest.raises(RequestError) as exc:
            parse_request(text)
        assert said in exc.value.reason, exc.value.reason


def test_what_goes_out_is_strict_json_too():
    """An app's hook or RPC handing back NaN is a bug to report, not a frame to send."""
    for value in (float("nan"), float("inf"), [1, float("-inf")]):
        with pytest.raises(ValueError):
            dumps(value)
    assert dumps({"x": 1.5}) == '{"x":1.5}'
