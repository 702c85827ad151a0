"""Where wsapp's handler falls short of gevent-websocket 0.10.1 today (issue 11): the tests
that fail on wsapp, and why. conftest.py marks each as a strict xfail, so a test that starts
passing fails the run until its line here is deleted: the table only ever shrinks, and the
stock handler (the control) is never excused.

test function -> {facet: reason}; a facet is the last part of the test's parameter id
("*" for every wsapp parameter), and only ids starting with "wsapp-" are concerned.
"""

from __future__ import annotations

NO_VERSION = ("python-engineio reads ws.version: AttributeError, the socket is closed "
              "1011 and the client reads 'Invalid empty packet received'")
NO_HANDLER = "ws.handler is missing (AttributeError, closed 1011)"
NO_LOGGER = "ws.logger is missing"
SPINS = ("receive() returns None for ever after the peer's close, where 0.10.1 raises "
         "WebSocketError: WebSocketApplication.handle() loops without yielding")

WSAPP_GAPS: dict[str, dict[str, str]] = {
    # Flask-SocketIO and its clients
    **{name: {"*": NO_VERSION} for name in (
        "test_connect_on_websocket_transport", "test_bad_token_refused", "test_emit_with_ack",
        "test_rooms", "test_broadcast", "test_background_task_progress",
        "test_binary_payloads", "test_handler_error", "test_disconnect_seen")},
    "test_browser_client": {
        "websocket-only": "no ws.version: the socket.io client never connects",
        "upgrade": "no ws.version: the upgrade fails and the engine stays on polling"},
    # gevent-websocket's Resource API
    "test_echo_open_message_close": {"*": SPINS + "; on_close never runs"},
    "test_chat_broadcast_through_server_clients": {"*": NO_HANDLER},
    "test_idle_cpu_after_clients_leave": {"*": SPINS + ", at 100% CPU"},
    # a plain WSGI app
    "test_socket_attributes": {"*": "ws.version is missing"},
    # the API, item by item
    "test_websocket_method_signature": {
        "send_frame": "send_frame(frame) takes pre-built frame bytes",
        "close": "close(code=1000, reason='') instead of close(code=1000, message=b'')",
        **{name: f"{name}() is missing" for name in (
            "read_frame", "validate_utf8", "handle_close", "handle_ping", "handle_pong")}},
    "test_websocket_attribute": {
        "version": "ws.version is missing",
        "protocol": "ws.protocol is the negotiated subprotocol (None), not the requested "
                    "Sec-WebSocket-Protocol header",
        **{name: NO_HANDLER for name in (
            "handler_websocket_is_ws", "handler_client_address", "active_client",
            "server_clients_has_me", "handler_logger_is_server_logger")},
        "logger_is_handler_logger": NO_LOGGER,
        "logger_is_logger": NO_LOGGER,
        "current_app_on_close": "ws.current_app is None, not an object with on_close()",
        "stream_read_write": "ws.stream is missing",
        "raw_read_write": "ws.raw_read / ws.raw_write are missing",
        "utf8validator": "ws.utf8validator is missing",
        "validate_utf8": "ws.validate_utf8() is missing",
        "opcodes": "the OPCODE_* constants are missing"},
    "test_send_frame_with_opcode": {"*": "send_frame(message, opcode) raises TypeError"},
    "test_read_frame_then_read_message": {"*": "read_frame() is missing"},
    "test_handle_ping_pong_close": {"*": "handle_ping() is missing"},
    "test_close": {"keywords": "close(message=...) raises TypeError"},
    "test_after_peer_close": {
        "receive_raises": "a second receive() returns None instead of raising WebSocketError"},
    "test_after_server_close": {
        "receive_raises": "receive() after close() returns None instead of raising "
                          "WebSocketError"},
    "test_server_clients_and_active_client": {"*": NO_HANDLER + "; server.clients is never "
                                                   "filled"},
    "test_upgrade_websocket_override_refuses": {
        "*": "the handler never calls upgrade_websocket(): an override is ignored"},
    "test_upgrade_connection_and_run_websocket_overrides_run": {
        "*": "the handler never calls upgrade_connection() or run_websocket()"},
    "test_pre_start_hook": {"*": "WebSocketServer's pre_start_hook is never called"},
}


def gap(test_name: str, param_id: str) -> str | None:
    """Why `test_name[param_id]` fails on wsapp today, or None if it should pass."""
    if not param_id.startswith("wsapp-"):
        return None
    for facet, reason in WSAPP_GAPS.get(test_name, {}).items():
        if facet == "*" or param_id.endswith(f"-{facet}"):
            return reason
    return None
