"""RFC 6455 on gevent: frames, the sans-I/O protocol and handshake, permessage-deflate, the
connection object and the gevent-websocket-compatible handler.

Knows no channel, user or Flask: everything above builds on it, nothing here looks up.
"""
