"""Property tests of the /ws request parser (messages.py) and channel names (policy.py):
whatever a client sends gets a documented error code or a valid request — never another
exception, which would be an internal_error with a traceback."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.messages import OPS, parse_request
from wsapp.realtime.policy import check_channel

BOUNDED = settings(max_examples=500, deadline=None)
CODES = {"bad_json", "bad_request", "unknown_op", "bad_channel"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
requests = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(sorted(OPS)), st.text(max_size=8))},
    optional={"id": documents, "channel": st.one_of(st.text(max_size=40), documents),
              "since": documents, "data": documents, "msg": documents, "t": documents,
              "method": documents, "params": documents})


def check(text: str) -> None:
    try:
        req = parse_request(text)
    except RequestError as exc:
        assert exc.code in CODES and exc.reason, exc
        return
    assert req["op"] in OPS  # a request that passes is one the session can answer
    if "channel" in req:
        check_channel(req["channel"])


@BOUNDED
@given(st.text(max_size=300))
def test_any_text(text):
    check(text)


@BOUNDED
@given(requests)
def test_request_shaped_documents(req):
    check(json.dumps(req, allow_nan=True))


@BOUNDED
@given(st.text(max_size=140))
def test_channel_names_are_checked_whole(name):
    try:
        namespace = check_channel(name)
    except RequestError as exc:
        assert exc.code == "bad_channel"
        return
    assert name.startswith(namespace + ":") and "\n" not in name and len(name) <= 128
