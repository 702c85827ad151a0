"""Run wsapp: `python serve.py [--host H] [--port P] ...` (every flag also a WSAPP_* env var)."""

from gevent import monkey

monkey.patch_all()  # first: everything imported after this must see cooperative sockets

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from wsapp import create_app  # noqa: E402
from wsapp.config import from_args  # noqa: E402
from wsapp.server import make_server, serve_forever  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse settings, build the app, serve until SIGINT/SIGTERM."""
    settings = from_args(argv)
    worker = os.environ.get("WSAPP_WORKER")  # set by the --workers master for its workers
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s " + (f"w{worker} " if worker else "")
                        + "%(name)s: %(message)s")
    if settings.workers > 1:  # this process supervises; the workers serve
        from wsapp.workers import run_master

        return run_master(settings, sys.argv[1:] if argv is None else list(argv), __file__)
    from wsapp.workers import inherited_listener

    app = create_app(settings)
    try:
        server = make_server(app, settings, inherited_listener())
        server.init_socket()
    except OSError as exc:
        logging.getLogger("wsapp").error("cannot listen on %s:%s: %s", settings.host,
                                         settings.port, exc)
        return 2
    serve_forever(server, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
