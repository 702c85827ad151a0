"""Servers under test: one Flask echo app on gevent (stock or wsapp handler) and a websockets echo;
with ``--app socketio``, a Flask-SocketIO app on either gevent handler instead.

Run as ``python bench/apps.py stock|wsapp|websockets --port P [--app echo|socketio]``.
Every server listens on 127.0.0.1, logs no per-request lines, never negotiates
permessage-deflate and raises its own RLIMIT_NOFILE to the hard limit.  Keepalive pings stay
at each server's default (none in stock, 20 s in wsapp and websockets).  With
``--tracemalloc N`` the process traces Python allocations and, on SIGUSR1, writes
``{"current": .., "peak": ..}`` to ``--stats-file`` (and a snapshot to
``--snapshot-prefix``<n>.pickle when given) so the Python heap can be diffed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

ECHO_PATH = "/ws/echo"
MAX_MESSAGE = 1 << 20  # large enough for the 64 KiB workload, on every server
SERVERS = ("stock", "wsapp", "websockets")

_REPO_ROOT = Path(__file__).resolve().parent.parent


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_flask_app() -> Any:
    """The one Flask app shared by the stock and wsapp servers (gevent-websocket style view)."""
    from flask import Flask, request

    app = Flask("echo_bench")

    @app.route(ECHO_PATH, websocket=True)
    def echo() -> str:
        ws = request.environ["wsgi.websocket"]
        while True:
            msg = ws.receive()
            if msg is None:
                break
            # stock returns bytearray for binary frames, so test for str rather than bytes
            ws.send(msg, binary=not isinstance(msg, str))
        return ""

    return app


def make_socketio_app() -> Any:
    """A Flask-SocketIO app (async_mode="gevent") for bench/socketio_bench.py: "echo" answers
    with its data as the ack; "shout" broadcasts "shouted" to every client."""
    from flask import Flask
    from flask_socketio import SocketIO, emit

    app = Flask("socketio_bench")
    socketio = SocketIO(app, async_mode="gevent", logger=False, engineio_logger=False)

    @socketio.on("echo")
    def echo(data: Any) -> Any:
        return data

    @socketio.on("shout")
    def shout(data: Any) -> None:
        emit("shouted", data, broadcast=True)

    return app


APPS = {"echo": make_flask_app, "socketio": make_socketio_app}


def handler_class(kind: str) -> type:
    """The gevent-websocket compatible handler class for ``kind`` (stock or wsapp)."""
    if kind == "stock":
        from geventwebsocket.handler import WebSocketHandler
    elif kind == "wsapp":
        if str(_REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(_REPO_ROOT))
        from wsapp.websocket.handler import WebSocketHandler
    else:
        raise ValueError(f"not a gevent server: {kind}")
    return WebSocketHandler


class _Stats:
    """SIGUSR1 responder that dumps tracemalloc totals (and optionally snapshots)."""

    def __init__(self, stats_file: str | None, snapshot_prefix: str | None) -> None:
        self.stats_file = stats_file
        self.snapshot_prefix = snapshot_prefix
        self.count = 0

    def dump(self, *_: object) -> None:
        """Write current/peak traced memory; snapshot too when a prefix was given."""
        import tracemalloc

        if not tracemalloc.is_tracing():
            return
        current, peak = tracemalloc.get_traced_memory()
        if self.snapshot_prefix:
            snap = tracemalloc.take_snapshot()
            snap.dump(f"{self.snapshot_prefix}{self.count}.pickle")
        self.count += 1
        if self.stats_file:
            tmp = self.stats_file + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"current": current, "peak": peak, "seq": self.count}, fh)
            os.replace(tmp, self.stats_file)


def run_gevent(kind: str, host: str, port: int, stats: _Stats, app_name: str = "echo") -> None:
    """Serve a Flask app (APPS) with gevent.pywsgi and the chosen handler class."""
    from gevent import monkey

    monkey.patch_all()
    import logging

    import gevent
    from gevent.pywsgi import WSGIServer

    for name in ("wsapp", "geventwebsocket"):  # no per-connection log lines
        logging.getLogger(name).setLevel(logging.WARNING)
    handler = handler_class(kind)
    app = APPS[app_name]()
    server = WSGIServer((host, port), app, handler_class=handler, log=None, backlog=1024)
    gevent.signal_handler(signal.SIGUSR1, stats.dump)
    server.serve_forever()


def run_websockets(host: str, port: int, stats: _Stats) -> None:
    """Serve the same echo with websockets' asyncio implementation."""
    import asyncio
    import logging

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    logging.getLogger("websockets").setLevel(logging.ERROR)

    async def echo(ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                await ws.send(msg)
        except ConnectionClosed:
            pass  # the peer closed with echoes still queued

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stats.dump)
        async with serve(
            echo,
            host,
            port,
            compression=None,
            max_size=MAX_MESSAGE,
            backlog=1024,
        ) as server:
            await server.serve_forever()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run one server until killed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("server", choices=SERVERS)
    ap.add_argument("--app", choices=sorted(APPS), default="echo",
                    help="the Flask app the gevent servers serve (websockets: echo only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="trace Python allocations with this many frames (0 = off)")
    ap.add_argument("--stats-file", default=None)
    ap.add_argument("--snapshot-prefix", default=None)
    args = ap.parse_args(argv)

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_nofile()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(args.tracemalloc)
    stats = _Stats(args.stats_file, args.snapshot_prefix)
    if args.server == "websockets":
        run_websockets(args.host, args.port, stats)
    else:
        run_gevent(args.server, args.host, args.port, stats, args.app)


if __name__ == "__main__":
    main()
