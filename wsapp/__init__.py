"""wsapp: real-time push for Flask on gevent.

The public names are importable from here; each is loaded on first use, so that code which
only wants the WebSocket layer (`from wsapp import WebSocketHandler`, or `WebSocketServer`,
gevent-websocket's server with wsapp's handler) does not import Flask.

Layout, in the order data flows (imports only point down; CI checks it):

- ``wsapp`` (this level): how you run it: config, app factory, server, workers, gunicorn.
- ``wsapp.demo``: the demo site, a consumer of the public real-time API.
- ``wsapp.realtime``: channels, users, presence, recovery, push, the /ws protocol, the API.
- ``wsapp.realtime.engines``: where messages are kept and how they cross processes.
- ``wsapp.websocket``: RFC 6455 on gevent; knows no channel, user or Flask.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["Realtime", "Reject", "Settings", "WebSocketHandler", "WebSocketServer", "create_app"]
__version__ = "0.1.0"

_PUBLIC = {
    "Realtime": "wsapp.realtime.ext",
    "Reject": "wsapp.realtime.exceptions",
    "Settings": "wsapp.config",
    "WebSocketHandler": "wsapp.websocket.handler",
    "WebSocketServer": "wsapp.websocket.server",
    "create_app": "wsapp.app",
}

if TYPE_CHECKING:
    from wsapp.app import create_app
    from wsapp.config import Settings
    from wsapp.realtime.exceptions import Reject
    from wsapp.realtime.ext import Realtime
    from wsapp.websocket.handler import WebSocketHandler
    from wsapp.websocket.server import WebSocketServer


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'wsapp' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
