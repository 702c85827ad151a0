"""RealtimeOptions: the WebSocket layer's settings plus the real-time layer's, checked by both."""

from __future__ import annotations

import pytest

from wsapp.realtime.options import RealtimeOptions
from wsapp.websocket.options import WebSocketOptions, field_sections


def test_extends_the_websocket_options():
    opts = RealtimeOptions.from_env({"WSAPP_RATE_MESSAGES": "5", "WSAPP_MAX_BACKLOG": "7"})
    assert isinstance(opts, WebSocketOptions)
    assert (opts.rate_messages, opts.max_backlog) == (5.0, 7)
    assert [title for title, _ in field_sections(RealtimeOptions)] == ["Real-time", "WebSocket"]


@pytest.mark.parametrize("values,says", [
    ({"WSAPP_HISTORY_SIZE": "0"}, "history_size"),  # its own check
    ({"WSAPP_PUSH_TTL": "0"}, "push_ttl"),
    ({"WSAPP_MAX_MESSAGE_SIZE": "0"}, "max_message_size"),  # the layer below's, via super()
    ({"WSAPP_MAX_REPLAY_HOLD": "0"}, "max_replay_hold: must be at least 1"),
    ({"WSAPP_MAX_DROPPED": "-1"}, "max_dropped: must not be negative"),
])
def test_validate_checks_both_layers(values, says):
    with pytest.raises(ValueError, match=says):
        RealtimeOptions.from_env(values)


def test_store_url_defaults_to_sqlite_in_data_dir():
    assert RealtimeOptions(data_dir="/srv/x").store_url() == "sqlite:////srv/x/wsapp.db"
    assert RealtimeOptions(store="redis://h:1/0").store_url() == "redis://h:1/0"
