"""WebSocketOptions alone: the WebSocket layer's settings, loaded from WSAPP_* strings with
one-line errors, checked, and documented from the class (no server Settings involved)."""

from __future__ import annotations

import dataclasses

import pytest

from wsapp.websocket.options import (
    WebSocketOptions,
    field_sections,
    from_mapping,
    markdown_table,
)

WEBSOCKET_FIELDS = {"max_message_size", "max_fragments", "ping_interval", "ping_timeout",
                    "handshake_timeout", "close_timeout", "max_connections", "allowed_origins",
                    "deflate", "deflate_level", "max_connections_per_ip", "max_backlog",
                    "max_body_size", "body_timeout", "allowed_hosts",
                    "send_timeout", "turn_bytes", "turn_messages"}


def test_holds_exactly_the_websocket_layer_settings():
    assert {f.name for f in dataclasses.fields(WebSocketOptions)} == WEBSOCKET_FIELDS
    assert all(f.metadata.get("help") for f in dataclasses.fields(WebSocketOptions))


def test_from_env_reads_prefixed_strings_and_ignores_the_rest():
    opts = WebSocketOptions.from_env({"WSAPP_MAX_MESSAGE_SIZE": "1000", "WSAPP_DEFLATE": "no",
                                      "WSAPP_PING_INTERVAL": "2.5", "WSAPP_PORT": "1",
                                      "WSAPP_ALLOWED_ORIGINS": "", "MAX_FRAGMENTS": "3"})
    assert (opts.max_message_size, opts.deflate, opts.ping_interval) == (1000, False, 2.5)
    assert (opts.allowed_origins, opts.max_fragments) == ("", 4096)  # empty / unprefixed


def test_any_prefix_and_already_typed_values():
    opts = from_mapping(WebSocketOptions, {"APP_MAX_BACKLOG": 5, "APP_CLOSE_TIMEOUT": 1,
                                           "APP_DEFLATE": False}, prefix="APP_")
    assert (opts.max_backlog, opts.close_timeout, opts.deflate) == (5, 1.0, False)
    assert isinstance(opts.close_timeout, float)


@pytest.mark.parametrize("values,says", [
    ({"WSAPP_MAX_CONNECTIONS": "many"}, "max_connections: cannot read 'many' as int"),
    ({"WSAPP_DEFLATE": "maybe"}, "deflate: cannot read 'maybe' as bool"),
    ({"WSAPP_MAX_BACKLOG": 1.5}, "max_backlog: expected int, got 1.5"),
    ({"WSAPP_MAX_BACKLOG": True}, "max_backlog: expected int, got True"),
    ({"WSAPP_MAX_FRAGMENTS": "0"}, "max_fragments: must be at least 1, got 0"),
    ({"WSAPP_PING_TIMEOUT": "-1"}, "ping_timeout: must not be negative, got -1.0"),
    ({"WSAPP_HANDSHAKE_TIMEOUT": "0"}, "handshake_timeout: must be greater than 0, got 0.0"),
    ({"WSAPP_DEFLATE_LEVEL": "10"}, "deflate_level: must be 1..9, got 10"),
    ({"WSAPP_TURN_BYTES": "0"}, "turn_bytes: must be at least 1, got 0"),
    ({"WSAPP_TURN_MESSAGES": "0"}, "turn_messages: must be at least 1, got 0"),
    ({"WSAPP_SEND_TIMEOUT": "-1"}, "send_timeout: must not be negative, got -1.0"),
])
def test_bad_values_give_one_line_naming_the_field(values, says):
    with pytest.raises(ValueError) as info:
        from_mapping(WebSocketOptions, values)
    assert str(info.value) == says


def test_replace_keeps_the_class_and_validate_returns_self():
    opts = WebSocketOptions().replace(max_connections=3)
    assert type(opts) is WebSocketOptions and opts.max_connections == 3
    assert opts.validate() is opts


def test_origins_are_normalised():
    opts = WebSocketOptions(allowed_origins=" https://A.example/ , http://b:8080,,")
    assert opts.origins() == ["https://a.example", "http://b:8080"]


def test_its_documentation_is_one_websocket_section():
    [(title, group)] = field_sections(WebSocketOptions)
    assert title == "WebSocket" and {f.name for f in group} == WEBSOCKET_FIELDS
    table = markdown_table(WebSocketOptions)
    assert table.startswith("**WebSocket**\n\n| flag | environment | default | meaning |")
    assert "| `--max-backlog` | `WSAPP_MAX_BACKLOG` | `1048576` |" in table
    assert "| `--allowed-origins` | `WSAPP_ALLOWED_ORIGINS` | `(empty)` |" in table
