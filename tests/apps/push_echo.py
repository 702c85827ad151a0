"""Test app: /ws/push-echo pushes large binary frames from a greenlet while the route's own
greenlet echoes text, so two greenlets write to one connection at once.

Run like serve.py (same flags): `python tests/apps/push_echo.py --port P`. Query `count` and
`size` set how many pushed messages and how large. Message `seq` is its 4-byte number then
random.Random(seq) bytes (incompressible, so deflate does not shrink the frames), so the
client can check each one byte for byte.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import random  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from flask import Flask, request  # noqa: E402

from wsapp.config import from_args  # noqa: E402
from wsapp.server import make_server, serve_forever  # noqa: E402

app = Flask(__name__)


def pushed(seq: int, size: int) -> bytes:
    """The `seq`th pushed message."""
    return struct.pack("!I", seq) + random.Random(seq).randbytes(size - 4)


@app.route("/ws/push-echo", websocket=True)
def push_echo() -> str:
    """Push `count` binary messages from a second greenlet; echo text meanwhile."""
    ws = request.environ["wsgi.websocket"]
    count = int(request.args.get("count", "32"))
    size = int(request.args.get("size", str(256 * 1024)))

    def push() -> None:
        for seq in range(count):
            ws.send(pushed(seq, size), binary=True)
            gevent.sleep(0)

    pusher = gevent.spawn(push)
    try:
        while True:
            message = ws.receive()
            if message is None:
                break
            ws.send(message, binary=isinstance(message, bytes))
    finally:
        pusher.kill()
    return ""


def main() -> int:
    """Serve the app with wsapp's server until SIGTERM."""
    settings = from_args(sys.argv[1:])
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = make_server(app, settings)
        server.init_socket()
    except OSError as exc:  # the fixture retries on another port when it sees this
        logging.getLogger("push_echo").error("cannot listen on %s: %s", settings.port, exc)
        return 2
    serve_forever(server, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
