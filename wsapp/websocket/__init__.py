"""RFC 6455 on gevent: frames, the sans-I/O protocol and handshake, permessage-deflate, the
connection object, and gevent-websocket 0.10.1's API on top (the handler, the rest of its
WebSocket in compat.py, server.clients, its WebSocketServer).

Knows no channel, user or Flask: everything above builds on it, nothing here looks up.
"""
