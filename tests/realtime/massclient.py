"""Many websocket-client connections in one gevent process, driven over stdin/stdout.

Run by test_fanout.py as a subprocess (gevent monkey-patching must not leak into pytest):

    python massclient.py --port P --count 1000 --channel room:mass --users 50

It mints tokens, opens `count` connections subscribed to `channel`, prints one JSON line,
then obeys commands read from stdin, one per line, answering each with one JSON line:

    publish   one extra connection publishes; reports who got it and how often
    close     drops the connections: half with RST, a quarter with a bare FIN, the rest
              with a clean close handshake
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402
import websocket  # noqa: E402
from gevent.pool import Pool  # noqa: E402

NOFILE = 20000
TIMEOUT = 30.0


def say(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def mint(port: int, user: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/tokens",
                                 data=json.dumps({"user": user}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())["token"]


def recv_json(ws: websocket.WebSocket) -> dict:
    return json.loads(ws.recv())


class Conn:
    """One subscribed connection and what it received."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.received: list[str] = []  # msg ids of `message` frames
        self.pongs = 0

    def reader(self) -> None:
        """Record messages until the connection closes or the process stops it."""
        try:
            while True:
                frame = recv_json(self.ws)
                if frame.get("op") == "message":
                    self.received.append(frame["msg"])
                elif frame.get("op") == "pong":
                    self.pongs += 1
        except (OSError, ValueError, websocket.WebSocketException):
            pass


def open_conn(port: int, token: str, channel: str) -> Conn:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?token={token}",
                                     timeout=TIMEOUT)
    welcome = recv_json(ws)
    assert welcome["op"] == "welcome", welcome
    ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": channel}))
    while True:  # join events of others may come first
        reply = recv_json(ws)
        if reply.get("id") == 1 and reply.get("op") in ("ok", "error"):
            break
    assert reply["op"] == "ok", reply
    return Conn(ws)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.02)
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--channel", default="room:mass")
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    pool = Pool(100)
    tokens = pool.map(lambda i: mint(args.port, f"mass{i}"), range(args.users))
    started = time.monotonic()
    jobs = [pool.spawn(open_conn, args.port, tokens[i % args.users], args.channel)
            for i in range(args.count)]
    gevent.joinall(jobs, timeout=120)
    conns = [j.value for j in jobs if j.successful() and j.value is not None]
    errors = sorted({repr(j.exception) for j in jobs if j.exception is not None})[:5]
    readers = [gevent.spawn(c.reader) for c in conns]
    say(event="subscribed", ok=len(conns), errors=errors,
        seconds=round(time.monotonic() - started, 2))

    for line in sys.stdin:
        command = line.strip()
        if command == "publish":
            pub = websocket.create_connection(
                f"ws://127.0.0.1:{args.port}/ws?token={tokens[0]}", timeout=TIMEOUT)
            recv_json(pub)  # welcome
            t0 = time.monotonic()
            pub.send(json.dumps({"op": "publish", "id": "p", "channel": args.channel,
                                 "data": {"hello": "everyone"}}))
            reply = recv_json(pub)
            while reply.get("id") != "p":
                reply = recv_json(pub)
            msg = reply.get("msg")
            everyone = wait_until(lambda: all(c.received for c in conns), TIMEOUT)
            seconds = time.monotonic() - t0
            # A ping round trip on each: a duplicate would arrive before its pong.
            for c in conns:
                c.ws.send(json.dumps({"op": "ping", "t": 1}))
            wait_until(lambda: all(c.pongs for c in conns), TIMEOUT)
            counts: dict[int, int] = {}
            for c in conns:
                n = c.received.count(msg)
                counts[n] = counts.get(n, 0) + 1
            pub.close()
            say(event="published", reply=reply, everyone=everyone,
                seconds=round(seconds, 3), counts={str(k): v for k, v in counts.items()},
                strangers=sum(1 for c in conns for m in c.received if m != msg))
        elif command == "close":
            half, quarter = len(conns) // 2, len(conns) // 4
            for i, c in enumerate(conns):
                sock = c.ws.sock
                if i < half:  # RST: the kernel discards the connection at once
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                elif i < half + quarter:  # FIN without a close frame
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                else:  # the reader sees the server's answering close frame and stops
                    c.ws.send_close(1000, b"bye")
            gevent.joinall(readers, timeout=TIMEOUT)
            for c in conns[half + quarter:]:
                c.ws.shutdown()
            say(event="closed", rst=half, fin=quarter, clean=len(conns) - half - quarter)
        elif command == "exit" or not command:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
