"""Apps the compatibility suite serves. Each is written for gevent-websocket or Flask-SocketIO
as their documentation shows, and knows nothing of wsapp: tests/compat/serve_app.py (or
gunicorn) picks the handler. In the server process this folder is on sys.path, so the apps
import `journal` as a top-level module."""
