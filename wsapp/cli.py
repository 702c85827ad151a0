"""The command line every entry shares: `python serve.py`, `python -m wsapp` and the `wsapp`
script all call main(), so they take the same flags and start the same server.

gevent must monkey-patch the standard library before anything imports socket, ssl or code
built on threading: a module that kept the blocking originals (`from socket import socket`,
a lock taken at import time) would block the one OS thread, freezing every connection while
it waits. So each entry imports only this module, this module imports nothing of sockets or
threads at its top, and main() patches before it imports the server and everything under it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str | None = None,
         command: Sequence[str] | None = None) -> int:
    """Parse flags over WSAPP_* variables into Settings, then serve until SIGINT/SIGTERM.

    `prog` names the program in help and errors (default: the running script's file name,
    `serve.py` or `wsapp`); `command` is what the interpreter runs to start this same entry
    again, for the `--workers` master's workers (default: the running script's path;
    `python -m wsapp` passes `["-m", "wsapp"]`).
    """
    from gevent import monkey

    monkey.patch_all()  # first: what is imported below must see cooperative sockets

    import logging

    from wsapp.config import from_args

    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0])
    settings = from_args(argv, prog=prog)
    worker = os.environ.get("WSAPP_WORKER")  # set by the --workers master for its workers
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s " + (f"w{worker} " if worker else "")
                        + "%(name)s: %(message)s")
    if settings.workers > 1:  # this process supervises; the workers serve
        from wsapp.workers import run_master

        command = list(command or [os.path.abspath(sys.argv[0])])
        return run_master(settings, argv, command, prog)

    from wsapp.app import create_app
    from wsapp.config import setting_error
    from wsapp.realtime.state import StartError
    from wsapp.server import make_server, realtime_of, serve_forever
    from wsapp.workers import inherited_listener

    app = create_app(settings)
    realtime = realtime_of(app)
    try:  # the engines and token keys open now: a bad one is a flag error, not a 500 later
        if realtime is not None:
            realtime.start()
    except StartError as exc:
        setting_error(str(exc), argv, prog)
    try:
        server = make_server(app, settings, inherited_listener())
        server.init_socket()
    except OSError as exc:
        logging.getLogger("wsapp").error("cannot listen on %s:%s: %s", settings.host,
                                         settings.port, exc)
        return 2
    serve_forever(server, settings)
    return 0
