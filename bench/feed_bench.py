"""Feed throughput: pushes per second from a backlog into the store and out to connected
users, for each feed source, against POST /api/push on the same server, in one run.

    python bench/feed_bench.py            # 20,000 messages per source
    python bench/feed_bench.py --quick    # 2,000
    python bench/feed_bench.py --json     # the figures as JSON on stdout

One serve.py (the default SQLite store, no rate limits) runs with three feeds: a Redis Stream
on a redis-server this script starts, a RabbitMQ queue and a PostgreSQL outbox table on the
local services (names of their own, removed at the end). --users users are connected, one
WebSocket each, read by threads that count personal messages.

For each source the whole backlog appears at once — one MULTI/EXEC of XADDs, one AMQP
transaction, one PostgreSQL transaction — and the clock runs from that commit until every
message reached its user. POST /api/push is timed the same way: from the first request until
every push arrived, sent by --http-conns (64) keep-alive connections at once (each
request on a keep-alive connection waits ~44 ms here, a delayed-ACK stall on the server side:
concurrency hides it). Every message
carries its own idempotency key, as a producer that retries would send it. Figures are
messages/s and each source's ratio to the HTTP API's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' producers and redis-server helper

import amqp  # noqa: E402
import serverproc  # noqa: E402
import websocket  # noqa: E402
from feedsources import AmqpSource, PostgresSource, RedisStreamSource  # noqa: E402
from redisproc import RedisServer  # noqa: E402


class Readers:
    """One WebSocket per user, each read by a thread counting personal messages."""

    def __init__(self, port: int, users: list[str]) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._sockets = []
        for user in users:
            token = _post(port, "/api/tokens", {"user": user})["token"]
            ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?token={token}",
                                             timeout=60)
            ws.recv()  # welcome
            self._sockets.append(ws)
            threading.Thread(target=self._read, args=(ws,), daemon=True).start()

    def _read(self, ws: websocket.WebSocket) -> None:
        try:
            while True:
                if '"channel":"user:' in ws.recv():
                    with self._lock:
                        self.count += 1
        except (OSError, websocket.WebSocketException):
            return

    def wait(self, target: int, timeout: float) -> float:
        """The moment (perf_counter) the count reached `target`."""
        deadline = time.perf_counter() + timeout
        while self.count < target:
            if time.perf_counter() > deadline:
                raise SystemExit(f"only {self.count} of {target} messages arrived")
            time.sleep(0.002)
        return time.perf_counter()

    def close(self) -> None:
        for ws in self._sockets:
            ws.close(timeout=1)


def _post(port: int, path: str, body: dict, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    if resp.status != 200:
        raise SystemExit(f"POST {path}: {resp.status} {data[:200]!r}")
    return json.loads(data)


def messages(kind: str, n: int, users: list[str]) -> list[dict]:
    return [{"op": "push", "user": users[i % len(users)], "data": {"i": i, "via": kind},
             "key": f"{kind}-{i}"} for i in range(n)]


def at_once(source, batch: list[dict]) -> float:
    """Make the whole backlog appear in one commit; the moment it did."""
    if isinstance(source, RedisStreamSource):
        pipe = source.client.pipeline(transaction=True)
        for m in batch:
            pipe.xadd(source.stream, {"message": json.dumps(m)})
        pipe.execute()
    elif isinstance(source, AmqpSource):
        channel = source.channel
        channel.tx_select()
        for m in batch:
            channel.basic_publish(amqp.Message(json.dumps(m), delivery_mode=2),
                                  exchange="", routing_key=source.queue)
        channel.tx_commit()
    else:
        source.send_many(batch)
    return time.perf_counter()


def http_pushes(port: int, batch: list[dict], conns: int) -> float:
    """Send every push over `conns` keep-alive connections at once; the start moment."""
    shares = [batch[i::conns] for i in range(conns)]

    def send(share: list[dict]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for m in share:
            _post(port, "/api/push", {k: v for k, v in m.items() if k != "op"}, conn)
        conn.close()

    threads = [threading.Thread(target=send, args=(s,)) for s in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    return started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 messages per source")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--http-conns", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n = 2000 if args.quick else args.messages
    users = [f"u{i}" for i in range(args.users)]
    work = Path(tempfile.mkdtemp(prefix="feed-bench-"))
    redis_server = RedisServer(work / "redis").start()
    sources = {"redis": RedisStreamSource(redis_server.port), "amqp": AmqpSource(),
               "postgresql": PostgresSource()}
    port = serverproc.free_port()
    argv = [sys.executable, str(ROOT / "serve.py"), "--port", str(port), "--data-dir",
            str(work / "data"), "--rate-messages", "0", "--rate-bytes", "0",
            "--max-backlog", str(64 * 1024 * 1024), "--log-level", "WARNING"]
    for source in sources.values():
        argv += ["--feed", source.url()]
    server = serverproc.spawn(argv, work / "server.log")
    readers = None
    results: dict[str, float] = {}
    try:
        serverproc.wait_listening(server, port, work / "server.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every feed connected
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            feeds = json.loads(conn.getresponse().read())["feeds"]
            conn.close()
            if all(f["state"] == "up" for f in feeds):
                break
            time.sleep(0.2)
        readers = Readers(port, users)
        expected = 0
        for kind in ("api", *sources):
            batch = messages(kind, n, users)
            expected += n
            if kind == "api":
                started = http_pushes(port, batch, args.http_conns)
            else:
                started = at_once(sources[kind], batch)
            elapsed = readers.wait(expected, timeout=600) - started
            results[kind] = n / elapsed
            if not args.json:
                print(f"{kind:>10}: {n} messages in {elapsed:6.2f}s = {results[kind]:8.0f}/s",
                      flush=True)
    finally:
        if readers is not None:
            readers.close()
        serverproc.stop(server, 15)
        for source in sources.values():
            source.close()
        redis_server.stop()
    ratios = {k: results[k] / results["api"] for k in sources}
    figures = {"messages": n, "users": args.users, "http_conns": args.http_conns,
               "per_second": {k: round(v) for k, v in results.items()},
               "ratio_to_api": {k: round(v, 2) for k, v in ratios.items()},
               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "python": platform.python_version(),
               "when": time.strftime("%Y-%m-%d")}
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print("ratio to POST /api/push: " + ", ".join(f"{k} {v:.2f}x"
                                                    for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
