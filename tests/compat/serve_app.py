"""Serve one compat app with a chosen WebSocket handler, as its README would:

    python tests/compat/serve_app.py MODULE:ATTR --handler stock|wsapp --port P
        [--server pywsgi|wsserver|wsappserver] [--handler-factory MODULE:FUNC]
        [--pre-start-hook MODULE:FUNC]

`pywsgi` is `gevent.pywsgi.WSGIServer(addr, app, handler_class=H)`; `wsserver` is
gevent-websocket's `WebSocketServer(addr, app, handler_class=H)` and `wsappserver` wsapp's
(wsapp.websocket.server.WebSocketServer, the same constructor). MODULE is a file in
tests/compat/apps/. gunicorn runs the same apps with the worker class from WORKERS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
ROOT = APPS.parents[2]
HANDLERS = {"stock": "geventwebsocket.handler:WebSocketHandler",
            "wsapp": "wsapp.websocket.handler:WebSocketHandler"}
WORKERS = {"stock": "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
           "wsapp": "wsapp.gunicorn.Worker"}
WEBSOCKET_SERVERS = {"wsserver": "geventwebsocket.server:WebSocketServer",
                     "wsappserver": "wsapp.websocket.server:WebSocketServer"}


def load(spec: str):
    """The object named by "module:attribute"."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("app", help="MODULE:ATTR of the WSGI app, MODULE in tests/compat/apps")
    ap.add_argument("--handler", choices=sorted(HANDLERS), required=True)
    ap.add_argument("--server", choices=("pywsgi", *WEBSOCKET_SERVERS), default="pywsgi")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--handler-factory", help="MODULE:FUNC turning the handler into a subclass")
    ap.add_argument("--pre-start-hook", help="MODULE:FUNC for WebSocketServer's pre_start_hook")
    args = ap.parse_args(argv)

    from gevent import monkey

    monkey.patch_all()
    sys.path[:0] = [str(APPS), str(ROOT)]
    handler = load(HANDLERS[args.handler])
    if args.handler_factory:
        handler = load(args.handler_factory)(handler)
    app = load(args.app)
    address = ("127.0.0.1", args.port)
    if args.server in WEBSOCKET_SERVERS:
        hook = load(args.pre_start_hook) if args.pre_start_hook else None
        server = load(WEBSOCKET_SERVERS[args.server])(address, app, handler_class=handler,
                                                      pre_start_hook=hook)
    else:
        from gevent.pywsgi import WSGIServer

        server = WSGIServer(address, app, handler_class=handler)
    print(f"serving {args.app} with {handler.__module__}.{handler.__qualname__} on "
          f"{type(server).__name__} port {args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
