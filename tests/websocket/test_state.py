"""The connection's state machine with plain events, no sockets: the transition table, who
closed first, the codes both ways and the code a connection is counted under."""

from __future__ import annotations

import pytest

from wsapp.websocket.exceptions import ConnectionClosed
from wsapp.websocket.frames import CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_NO_STATUS
from wsapp.websocket.state import (
    CLIENT,
    SERVER,
    TRANSITIONS,
    ConnectionState,
    State,
    Trigger,
    next_state,
)


def test_states_are_ordered_so_closed_is_one_comparison():
    assert State.CONNECTING < State.OPEN < State.CLOSING < State.CLOSED
    for state in State:
        c = ConnectionState()
        c.state = state
        assert c.closed is (state >= State.CLOSING)


def test_the_table_covers_every_state_and_closed_absorbs_everything():
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.CLOSED] == dict.fromkeys(Trigger, State.CLOSED)
    # every state can be lost; nothing leads back to CONNECTING or OPEN from closing
    for state in State:
        assert next_state(state, Trigger.LOST) is State.CLOSED
    assert State.OPEN not in TRANSITIONS[State.CLOSING].values()


@pytest.mark.parametrize("state,trigger", [
    (State.CONNECTING, Trigger.SEND_CLOSE),  # the 101 must go out before any frame
    (State.CONNECTING, Trigger.RECV_CLOSE),
    (State.CONNECTING, Trigger.SHUTDOWN),
    (State.OPEN, Trigger.ACCEPT),
    (State.OPEN, Trigger.REFUSE),
    (State.OPEN, Trigger.SHUTDOWN),  # TCP is shut only after a close frame
    (State.CLOSING, Trigger.ACCEPT),
])
def test_transitions_not_in_the_table_are_bugs(state, trigger):
    with pytest.raises(RuntimeError, match=f"{state.name}.*{trigger.name}"):
        next_state(state, trigger)


def test_accept_opens_once():
    c = ConnectionState()
    assert c.state is State.CONNECTING and not c.closed
    assert c.opened() is True
    assert c.state is State.OPEN
    assert c.opened() is False  # already open: no second 101


def test_without_a_pending_101_it_starts_open():
    assert ConnectionState(connecting=False).state is State.OPEN


def test_refused_never_opens_and_sends_nothing():
    c = ConnectionState()
    c.refused()
    assert c.state is State.CLOSED and c.closed
    assert c.opened() is False
    assert c.close_sent(1000) is False
    assert (c.sent_close_code, c.closed_by) == (None, None)


def test_server_closes_first_then_the_peer_echoes():
    c = ConnectionState(connecting=False)
    assert c.close_sent(CLOSE_GOING_AWAY) is True
    assert c.state is State.CLOSING and c.closed and c.closed_by == SERVER
    assert c.close_sent(1000) is False  # one close frame per connection
    assert c.sent_close_code == CLOSE_GOING_AWAY
    assert c.close_received(CLOSE_GOING_AWAY, "") == CLOSE_GOING_AWAY
    assert c.closed_by == SERVER  # the echo does not change who started
    assert c.finished(Trigger.SHUTDOWN) is True
    assert c.state is State.CLOSED
    assert (c.sent_close_code, c.close_code, c.final_code) == (1001, 1001, 1001)


def test_client_closes_first_and_is_answered_with_its_code():
    c = ConnectionState(connecting=False)
    answer = c.close_received(4000, "bye")
    assert answer == 4000
    assert c.state is State.CLOSING and c.closed_by == CLIENT
    assert (c.close_code, c.close_reason) == (4000, "bye")
    assert c.close_sent(answer) is True
    assert c.sent_close_code == 4000 and c.closed_by == CLIENT
    assert c.finished(Trigger.SHUTDOWN) is True
    assert c.final_code == 4000


def test_a_close_frame_without_a_code_is_answered_without_one():
    c = ConnectionState(connecting=False)
    assert c.close_received(CLOSE_NO_STATUS, "") is None
    assert c.close_sent(None) is True
    assert c.sent_close_code == CLOSE_NO_STATUS  # recorded as 1005, never sent on the wire


def test_protocol_failure_sends_its_code_and_records_no_peer_code():
    c = ConnectionState(connecting=False)
    assert c.close_sent(1002) is True
    c.failed("reserved bits set")
    assert (c.close_code, c.close_reason) == (CLOSE_ABNORMAL, "reserved bits set")
    assert c.closed_by == SERVER
    assert c.finished(Trigger.SHUTDOWN) is True
    assert c.final_code == 1002


def test_a_dropped_connection_ends_1006_and_only_the_first_finish_counts():
    c = ConnectionState(connecting=False)
    c.dropped()
    assert c.finished(Trigger.LOST) is True
    assert c.finished(Trigger.LOST) is False  # a late abort: nothing to count again
    assert c.finished(Trigger.SHUTDOWN) is False
    assert (c.close_code, c.closed_by, c.final_code) == (CLOSE_ABNORMAL, None, CLOSE_ABNORMAL)


def test_dropped_keeps_a_code_the_peer_did_send():
    c = ConnectionState(connecting=False)
    c.close_received(1000, "")
    c.dropped()
    assert c.close_code == 1000


def test_a_close_frame_reached_after_the_transport_died_is_recorded_but_changes_nothing():
    c = ConnectionState(connecting=False)
    c.finished(Trigger.LOST)
    assert c.close_received(1001, "late") == 1001
    assert c.state is State.CLOSED and c.closed_by is None
    assert c.close_sent(1001) is False


def test_a_lost_connection_in_connecting_is_closed_without_a_101():
    c = ConnectionState()
    assert c.finished(Trigger.LOST) is True
    assert c.opened() is False


def test_closed_error_carries_the_codes():
    c = ConnectionState(connecting=False)
    c.close_received(4001, "done")
    err = c.closed_error()
    assert isinstance(err, ConnectionClosed) and (err.code, err.reason) == (4001, "done")
    c = ConnectionState(connecting=False)
    c.close_sent(1001)
    assert c.closed_error().code == 1001  # no peer code yet: ours
