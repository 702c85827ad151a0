"""Compatibility suite: unchanged third-party code (Flask-SocketIO, python-socketio, the
socket.io browser client, gevent-websocket's Resource API, plain gevent-websocket WSGI apps)
run against gevent-websocket 0.10.1's handler (the control) and wsapp's."""
