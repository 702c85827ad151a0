"""A plain WSGI app (no framework) written for gevent-websocket: it reads
environ["wsgi.websocket"] as the library's README does.

/echo echoes every message (`ws.send(message)` picks text or binary); /info sends what the
socket says about itself (ws.version, ws.path, ws.origin, ws.protocol, ws.environ) as JSON;
/room sends each message to every socket in the room, dropping those that fail. The end of
each route is recorded (GET /_events).
"""

from __future__ import annotations

import json

from journal import record, websocket_only

ROOM: set = set()


@websocket_only
def application(environ, start_response):
    path = environ["PATH_INFO"]
    ws = environ["wsgi.websocket"]
    peer = environ["REMOTE_PORT"]
    if path == "/echo":
        while True:
            message = ws.receive()
            if message is None:
                break
            ws.send(message)
    elif path == "/info":
        ws.send(json.dumps({
            "version": ws.version,
            "path": ws.path,
            "origin": ws.origin,
            "protocol": ws.protocol,
            "query": ws.environ.get("QUERY_STRING"),
            "same_environ": ws.environ is environ,
            "websocket_version": environ.get("wsgi.websocket_version"),
        }))
        ws.receive()
    elif path == "/room":
        ROOM.add(ws)
        try:
            while True:
                message = ws.receive()
                if message is None:
                    break
                for other in list(ROOM):
                    try:
                        other.send(message)
                    except Exception:
                        ROOM.discard(other)
        finally:
            ROOM.discard(ws)
    record("done", path=path, peer=peer)
    return []
