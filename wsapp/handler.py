"""The path README and gevent-websocket users were given: `from wsapp.handler import
WebSocketHandler`. The handler lives in wsapp.websocket.handler."""

from wsapp.websocket.handler import WebSocketHandler

__all__ = ["WebSocketHandler"]
