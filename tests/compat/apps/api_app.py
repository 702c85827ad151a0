"""Probes of gevent-websocket 0.10.1's public API, each route using one part of it the way
apps do; tests/compat/test_api_surface.py reads what happened.

/probe       sends JSON: each attribute of the WebSocket and its handler as the app sees it,
             and the plain signatures of the WebSocket's methods
/send_frame  ws.send_frame(message, opcode) with text, binary and ping opcodes (0.10.1
             encodes a ping's message as text, as it does a text message)
/read_frame  ws.read_frame() then ws.read_message() (a fragmented message), answered as JSON
/control     handle_ping, handle_pong, then handle_close with a code and a reason
/close       ws.close(code=..., message=...) as keywords, or ws.close() on ?default
/after_peer_close, /after_server_close   receive() and send() once the connection is closed
/clients     handler.server.clients and active_client, again on every message
Handlers built by `make_handler(base)` override upgrade_websocket (refusing /refused with
403), upgrade_connection and run_websocket, as apps do; a WebSocketServer gets
`pre_start_hook`, which sends /hooked to the plain WSGI path.
"""

from __future__ import annotations

import json
import logging
import struct
from urllib.parse import parse_qs

from geventwebsocket.exceptions import WebSocketError
from journal import plain_signature, record, websocket_only

METHODS = ("receive", "send", "send_frame", "close", "read_frame", "read_message",
           "validate_utf8", "handle_close", "handle_ping", "handle_pong")


def _try(func):
    """func()'s value, or the exception's "Type: message" (one probe failing must not hide
    the others)."""
    try:
        return func()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _outcome(func) -> dict:
    """How func() ended: its return value, or the exception and whether it is a
    geventwebsocket WebSocketError."""
    try:
        value = func()
    except Exception as exc:
        return {"raised": type(exc).__name__, "websocket_error": isinstance(exc, WebSocketError)}
    return {"returned": repr(value)}


def probe(ws, environ) -> dict:
    handler = getattr(ws, "handler", None)
    report = {
        "version": _try(lambda: ws.version),
        "path": _try(lambda: ws.path),
        "origin": _try(lambda: ws.origin),
        "protocol": _try(lambda: ws.protocol),
        "environ_is_request_environ": _try(lambda: ws.environ is environ),
        "closed": _try(lambda: ws.closed),
        "handler_websocket_is_ws": _try(lambda: handler.websocket is ws),
        "handler_client_address": _try(lambda: list(handler.client_address)),
        "active_client": _try(lambda: [type(handler.active_client).__name__,
                                       handler.active_client.ws is ws,
                                       handler.active_client.address == handler.client_address]),
        "server_clients_has_me": _try(lambda: handler.server.clients[handler.client_address].ws
                                      is ws),
        "logger_is_handler_logger": _try(lambda: ws.logger is handler.logger),
        "handler_logger_is_server_logger": _try(lambda: handler.logger is handler.server.logger),
        "logger_is_logger": _try(lambda: isinstance(ws.logger, logging.Logger)),
        "current_app_on_close": _try(lambda: callable(ws.current_app.on_close)),
        "stream_read_write": _try(lambda: [callable(ws.stream.read), callable(ws.stream.write)]),
        "raw_read_write": _try(lambda: [callable(ws.raw_read), callable(ws.raw_write)]),
        "utf8validator": _try(lambda: [ws.utf8validator.validate(b"caf\xc3\xa9")[0],
                                       ws.utf8validator.reset(),
                                       ws.utf8validator.validate(b"\xff")[0],
                                       ws.utf8validator.reset()]),
        "validate_utf8": _try(lambda: [_outcome(lambda: ws.validate_utf8(b"ok")),
                                       _outcome(lambda: ws.validate_utf8(b"\xc3("))]),
        "opcodes": _try(lambda: [ws.OPCODE_CONTINUATION, ws.OPCODE_TEXT, ws.OPCODE_BINARY,
                                 ws.OPCODE_CLOSE, ws.OPCODE_PING, ws.OPCODE_PONG]),
        "websocket_version_key": environ.get("wsgi.websocket_version"),
    }
    report["signatures"] = {name: _try(lambda name=name: plain_signature(getattr(type(ws), name)))
                            for name in METHODS}
    return report


@websocket_only
def application(environ, start_response):
    path = environ["PATH_INFO"]
    ws = environ["wsgi.websocket"]
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                                     keep_blank_values=True).items()}
    tag = query.get("tag", "")
    if path == "/probe":
        ws.send(json.dumps(probe(ws, environ)))
        ws.receive()
    elif path == "/send_frame":
        ws.send_frame("h\u00e9llo", ws.OPCODE_TEXT)
        ws.send_frame(b"\x00\xff", ws.OPCODE_BINARY)
        ws.send_frame("pp", ws.OPCODE_PING)
        ws.send_frame(message="kw", opcode=ws.OPCODE_TEXT)
        ws.receive()
    elif path == "/read_frame":
        header, payload = ws.read_frame()
        ws.send(json.dumps({"opcode": header.opcode, "fin": bool(header.fin),
                            "length": header.length, "payload": bytes(payload).decode()}))
        ws.send(json.dumps({"message": ws.read_message()}))
        ws.receive()
    elif path == "/control":
        ws.handle_ping(None, b"hp")
        ws.handle_pong(None, b"ignored")
        ws.send("after pong")
        ws.handle_close(None, struct.pack("!H", 4000) + b"bye")
        record("control", tag=tag, closed=ws.closed)
    elif path == "/close":
        if "default" in query:
            ws.close()
        else:
            ws.close(code=int(query["code"]), message=query["message"].encode())
    elif path == "/after_peer_close":
        first = _outcome(ws.receive)
        record("after_peer_close", tag=tag, first=first, closed=ws.closed,
               receive=_outcome(ws.receive), send=_outcome(lambda: ws.send("late")))
    elif path == "/after_server_close":
        ws.close()
        record("after_server_close", tag=tag, closed=ws.closed,
               receive=_outcome(ws.receive), send=_outcome(lambda: ws.send("late")))
    elif path == "/clients":
        handler = ws.handler
        while True:
            ws.send(json.dumps({
                "me": list(handler.client_address),
                "active": list(handler.active_client.address),
                "clients": sorted([list(address), list(client.address),
                                   type(client).__name__, client.ws is not None]
                                  for address, client in handler.server.clients.items()),
            }))
            if ws.receive() is None:
                break
    return []


def make_handler(base: type) -> type:
    """`base` (a gevent-websocket WebSocketHandler) with the overrides apps write."""

    class AuditingHandler(base):
        def upgrade_websocket(self):
            if self.environ.get("PATH_INFO") == "/refused":
                self.start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"refused by upgrade_websocket\n"]
            return super().upgrade_websocket()

        def upgrade_connection(self):
            record("upgrade_connection", query=self.environ.get("QUERY_STRING"))
            return super().upgrade_connection()

        def run_websocket(self):
            record("run_websocket", query=self.environ.get("QUERY_STRING"))
            return super().run_websocket()

    return AuditingHandler


def pre_start_hook(handler) -> bool:
    """WebSocketServer's hook: True sends the request to the plain WSGI path, no upgrade."""
    record("pre_start_hook", path=handler.environ.get("PATH_INFO"),
           handler=type(handler).__name__)
    return handler.environ.get("PATH_INFO") == "/hooked"
