"""Reconnect storm: clients with tokens and a room subscription, their server restarted — how
long until every one is back, resubscribed with `since` and caught up — against the time the
same number of bare handshakes on /ws/echo take, in the same run.

    python bench/storm_bench.py            # 10,000 clients, 3 rounds (about 2 minutes)
    python bench/storm_bench.py --quick    # 1,000 clients, 1 round
    python bench/storm_bench.py --json     # the figures as JSON on stdout

Two serve.py processes share a redis-server the script starts (broker and store): S holds the
clients and is restarted; P stays up and publishes while S is down, as the rest of a cluster
would. The clients are this process's own raw sockets on one selector (the handshake and frame
helpers of bench/client.py), with at most --concurrency handshakes in flight in every phase.
Each of --rounds rounds:

1. handshakes: --clients bare handshakes on S's /ws/echo (S freshly started, as in the
   storm), timed until the last 101; closed;
2. setup: --clients connections with tokens (one user each), --per-room of them in each room,
   each subscribing to its room (without `since`), then held;
3. S is stopped (SIGTERM: close frames, which the clients answer); P publishes --missed
   messages to every room; S starts again on the same port and answers /healthz;
4. storm: every client reconnects at once with its token, resubscribes with `since` = the
   last offset it had, and is done when it holds the room's last offset (the replayed
   messages come before the subscribe reply). Timed from the go until the last is done.

The figure is storm time / handshake time (and the same for S's CPU seconds), the median over
the rounds: what a restart costs beyond the bare reconnects — tokens checked, presence
registered, pending personal messages read, history replayed, each room's join events sent.
Clients start reconnecting once S answers /healthz, as clients whose backoff is short would;
a failed attempt (refused, reset, an `error` reply) is retried after a short pause, in every
phase alike, and counted. Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import selectors
import signal
import socket
import statistics
import struct
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere
from client import (  # noqa: E402
    OP_CLOSE,
    OP_TEXT,
    check_response,
    client_frame,
    handshake_request,
    proc_cpu_seconds,
    raise_nofile,
    split_frames,
)
from cluster_bench import HOST, SECRET, Procs, free_port, machine  # noqa: E402

from wsapp.realtime.auth import Tokens  # noqa: E402  (client.py put the project on the path)

OP_PING, OP_PONG = 0x9, 0xA
HANDSHAKE, WELCOME, SUBSCRIBING, LIVE, DONE = range(5)
MAX_ATTEMPTS = 30
LINGER_RST = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left on the client side


class Client:
    """One simulated client: its path, its room and what it has seen."""

    __slots__ = ("path", "room", "last", "want", "since", "sock", "buf", "stage", "accept",
                 "attempts", "replayed", "joins", "retry_at")

    def __init__(self, path: str, room: str | None = None) -> None:
        self.path = path
        self.room = room
        self.last = 0  # the last offset of its room it holds
        self.want = 0  # done once last reaches this
        self.since: int | None = None  # subscribe with since (None: without)
        self.sock: socket.socket | None = None
        self.buf = b""
        self.stage = HANDSHAKE
        self.accept = b""
        self.attempts = 0
        self.replayed = 0
        self.joins = 0
        self.retry_at = 0.0


class Fleet:
    """Every client on one selector; `storm()` (re)connects them all and waits until done."""

    def __init__(self, port: int, concurrency: int) -> None:
        self.port = port
        self.concurrency = concurrency
        self.sel = selectors.DefaultSelector()
        self.retries = 0
        self.failures: list[str] = []

    def storm(self, clients: list[Client], timeout: float) -> float:
        """Connect every client (at most `concurrency` at once); seconds until all are done."""
        queue = list(reversed(clients))
        busy = done = 0
        waiting: list[Client] = []
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        while done < len(clients):
            now = time.monotonic()
            if now > deadline:
                stages = Counter(c.stage for c in clients)
                raise SystemExit(f"only {done} of {len(clients)} clients done in {timeout:.0f}s "
                                 f"(stages {dict(stages)}, {busy} in flight, {len(queue)} "
                                 f"queued); failures: {self.failures[-5:]}")
            ready = [c for c in waiting if c.retry_at <= now]
            if ready:
                waiting = [c for c in waiting if c.retry_at > now]
                queue += ready
            while queue and busy < self.concurrency:
                self._open(queue.pop())
                busy += 1
            for key, events in self.sel.select(0.05):
                client = key.data
                if client.stage == DONE:  # a held connection: keep reading what comes
                    self._drain(client)
                    continue
                outcome = self._step(client, events)
                if outcome == "done":
                    busy -= 1
                    done += 1
                elif outcome == "retry":
                    busy -= 1
                    self._drop(client)
                    client.attempts += 1
                    if client.attempts >= MAX_ATTEMPTS:
                        raise SystemExit(f"a client failed {MAX_ATTEMPTS} times: "
                                         f"{self.failures[-5:]}")
                    self.retries += 1
                    client.retry_at = time.monotonic() + random.uniform(0.05, 0.2)
                    waiting.append(client)
        return time.perf_counter() - started

    def pump(self, seconds: float) -> None:
        """Read (and discard) what held connections get for a while."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, _ in self.sel.select(0.05):
                self._drain(key.data)

    def close(self, clients: list[Client]) -> None:
        for client in clients:
            self._drop(client)

    # -- one client ------------------------------------------------------------------------

    def _open(self, client: Client) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        sock.connect_ex((HOST, self.port))
        client.sock, client.buf, client.stage = sock, b"", HANDSHAKE
        self.sel.register(sock, selectors.EVENT_WRITE, client)

    def _drop(self, client: Client) -> None:
        if client.sock is not None:
            try:
                self.sel.unregister(client.sock)
            except (KeyError, ValueError):
                pass
            client.sock.close()
            client.sock = None

    def _send(self, client: Client, data: bytes) -> None:
        client.sock.sendall(data)  # small frames into an empty buffer: never blocks here

    def _step(self, client: Client, events: int) -> str | None:
        """Advance one client on a readiness event: "done", "retry", or None (more to come)."""
        sock = client.sock
        if events & selectors.EVENT_WRITE:  # connected (or refused)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.failures.append(errno.errorcode.get(err, str(err)))
                return "retry"
            request, client.accept = handshake_request(HOST, self.port, client.path)
            self._send(client, request)
            self.sel.modify(sock, selectors.EVENT_READ, client)
            return None
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self.failures.append(repr(exc))
            return "retry"
        if not data:
            self.failures.append(f"closed at stage {client.stage}")
            return "retry"
        client.buf += data
        if client.stage == HANDSHAKE:
            if b"\r\n\r\n" not in client.buf:
                return None
            head, _, client.buf = client.buf.partition(b"\r\n\r\n")
            try:
                check_response(head, client.accept)
            except ValueError as exc:
                self.failures.append(str(exc))
                return "retry"
            if client.room is None:  # a bare handshake: that is all
                client.stage = DONE
                return "done"
            client.stage = WELCOME
        frames, client.buf = split_frames(client.buf)
        for opcode, payload in frames:
            outcome = self._frame(client, opcode, payload)
            if outcome is not None:
                return outcome
        return None

    def _frame(self, client: Client, opcode: int, payload: bytes) -> str | None:
        if opcode == OP_PING:
            self._send(client, client_frame(payload, OP_PONG))
            return None
        if opcode == OP_CLOSE:
            self.failures.append(f"close frame {payload[:2].hex()} at stage {client.stage}")
            return "retry"
        if opcode != OP_TEXT:
            return None
        if client.stage == WELCOME:  # the welcome: subscribe
            request: dict[str, Any] = {"op": "subscribe", "id": 1, "channel": client.room}
            if client.since is not None:
                request["since"] = client.since
            self._send(client, client_frame(json.dumps(request).encode(), OP_TEXT))
            client.stage = SUBSCRIBING
            return None
        if payload.startswith(b'{"op":"join"'):
            client.joins += 1
            return None
        frame = json.loads(payload)
        op = frame.get("op")
        if op == "message" and frame.get("channel") == client.room:
            client.last = max(client.last, frame["offset"])
            client.replayed += client.stage == SUBSCRIBING
        elif op == "ok" and frame.get("id") == 1:
            client.stage = LIVE
            client.want = max(client.want, frame["offset"])
            if client.since is None:  # no replay asked: it starts from here (as wsapp.js)
                client.last = max(client.last, frame["offset"])
        elif op == "error" and frame.get("id") == 1:
            self.failures.append(frame.get("code", "error"))
            return "retry"
        if client.stage == LIVE and client.last >= client.want:
            client.stage = DONE
            return "done"
        return None

    def _drain(self, client: Client) -> None:
        try:
            data = client.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the server went away (its restart): the storm reconnects it
            self._drop(client)
            return
        client.buf += data
        frames, client.buf = split_frames(client.buf)
        for opcode, payload in frames:
            if opcode == OP_PING:
                self._send(client, client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self._drop(client)
                return
            elif opcode == OP_TEXT and payload.startswith(b'{"op":"join"'):
                client.joins += 1


def publish_missed(port: int, rooms: list[str], missed: int, token: str,
                   timeout: float = 120.0) -> dict[str, int]:
    """Publish `missed` messages to every room over one /ws connection to P, pipelined; the
    last offset of each room."""
    fleet = Fleet(port, 1)
    me = Client(f"/ws?token={token}")  # no room: done once upgraded
    fleet.storm([me], 30)
    sock = me.sock
    sock.setblocking(True)
    sock.settimeout(timeout)
    frames = []
    for n in range(missed):
        for i, room in enumerate(rooms):
            body = {"op": "publish", "id": n * len(rooms) + i + 2, "channel": room,
                    "data": {"missed": n}}
            frames.append(client_frame(json.dumps(body).encode(), OP_TEXT))
    sock.sendall(b"".join(frames))
    last: dict[str, int] = {}
    buf, answered = me.buf, 0
    while answered < len(frames):
        data = sock.recv(1 << 16)
        if not data:
            raise SystemExit("the publisher's connection closed")
        buf += data
        got, buf = split_frames(buf)
        for opcode, payload in got:
            if opcode != OP_TEXT:
                continue
            reply = json.loads(payload)
            if reply.get("op") == "error":
                raise SystemExit(f"publish refused: {reply}")
            if reply.get("op") == "ok" and "offset" in reply:
                answered += 1
                last[reply["channel"]] = max(last.get(reply["channel"], 0), reply["offset"])
    fleet.close([me])
    return last


class Bench:
    """S (restarted each round) and P on one Redis, and the fleet that storms S."""

    def __init__(self, procs: Procs, args: argparse.Namespace, n: int,
                 rooms: list[str]) -> None:
        self.procs, self.args, self.n, self.rooms = procs, args, n, rooms
        url = f"redis://{HOST}:{procs.redis()}/0?prefix=storm{random.getrandbits(24):x}"
        self.flags = ("--broker", url, "--store", url, "--ping-interval", "0")
        self.port = free_port()
        self.server = procs.serve(self.port, *self.flags, name="storm")
        self.publisher_port = free_port()  # P: stays up, publishes while S is down
        procs.serve(self.publisher_port, *self.flags, "--rate-messages", "0", "--rate-bytes",
                    "0", name="publisher")
        self.tokens = Tokens(secret=SECRET.encode())
        self.fleet = Fleet(self.port, args.concurrency)

    def timed(self, clients: list[Client]) -> tuple[float, float]:
        """(seconds, server CPU seconds) for the fleet to get every client done."""
        cpu = proc_cpu_seconds(self.server.pid)
        took = self.fleet.storm(clients, 600)
        return took, proc_cpu_seconds(self.server.pid) - cpu

    def restart(self, clients: list[Client], publish: bool = True) -> dict[str, int]:
        """Stop S (SIGTERM), publish to every room from P meanwhile, start S on its port;
        each room's last offset."""
        self.server.send_signal(signal.SIGTERM)  # a deploy: close frames the fleet answers
        stopping = time.monotonic()
        while self.server.poll() is None and time.monotonic() - stopping < 60:
            self.fleet.pump(0.1)
        self.procs.stop(self.server)
        self.fleet.close(clients)
        last = publish_missed(self.publisher_port, self.rooms, self.args.missed,
                              self.tokens.mint("publisher", 3600)[0]) if publish else {}
        self.server = self.procs.serve(self.port, *self.flags, name="storm")
        return last

    def round(self, first: bool) -> dict[str, Any]:
        n, fleet = self.n, self.fleet
        if not first:  # the handshakes, like the storm, meet a process that served nothing
            self.restart([], publish=False)
        bare = [Client("/ws/echo") for _ in range(n)]
        handshakes, handshakes_cpu = self.timed(bare)
        fleet.close(bare)
        clients = [Client(f"/ws?token={self.tokens.mint(f's{i}', 86400)[0]}",
                          self.rooms[i % len(self.rooms)]) for i in range(n)]
        setup, _ = self.timed(clients)
        fleet.pump(1.0)  # the last join events
        began = time.perf_counter()
        last = self.restart(clients)
        restart = time.perf_counter() - began
        for client in clients:
            client.since, client.want = client.last, last[client.room]
            client.replayed = client.attempts = client.joins = 0
        retries = fleet.retries
        storm, storm_cpu = self.timed(clients)
        if not all(c.last == last[c.room] for c in clients):
            raise SystemExit("a client is done without its room's last offset")
        fleet.close(clients)
        return {"handshakes_s": round(handshakes, 3), "storm_s": round(storm, 3),
                "ratio": round(storm / handshakes, 2),
                "handshakes_cpu_s": round(handshakes_cpu, 2), "storm_cpu_s": round(storm_cpu, 2),
                "cpu_ratio": round(storm_cpu / handshakes_cpu, 2),
                "setup_s": round(setup, 2), "restart_s": round(restart, 2),
                "replayed": sum(c.replayed for c in clients),
                "joins": sum(c.joins for c in clients),
                "storm_retries": fleet.retries - retries}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="restarts, each with its own "
                        "handshake measurement just before (the median ratio is the figure)")
    parser.add_argument("--quick", action="store_true", help="1,000 clients, one round")
    parser.add_argument("--per-room", type=int, default=10,
                        help="clients in each room (each hears the others' joins)")
    parser.add_argument("--missed", type=int, default=3,
                        help="messages published to each room while the server is down")
    parser.add_argument("--concurrency", type=int, default=1000,
                        help="handshakes in flight at once, in every phase")
    parser.add_argument("--workdir", default="/tmp/wsapp-storm-bench")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n = 1000 if args.quick else args.clients
    rounds = 1 if args.quick else args.rounds
    rooms = [f"room:storm-{i}" for i in range(max(1, n // args.per_room))]
    raise_nofile()  # this process holds every client socket
    figures: dict[str, Any] = {"machine": machine(), "clients": n, "rooms": len(rooms),
                               "missed_per_room": args.missed, "concurrency": args.concurrency,
                               "rounds": []}
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Procs(workdir)
    try:
        bench = Bench(procs, args, n, rooms)
        for r in range(rounds):
            result = bench.round(first=r == 0)
            figures["rounds"].append(result)
            if not args.json:
                print(f"round {r + 1}: {n} bare handshakes {result['handshakes_s']:.2f}s; "
                      f"restart {result['restart_s']:.2f}s ({len(rooms) * args.missed} "
                      f"publishes meanwhile); {n} clients back, resubscribed with since and "
                      f"caught up ({result['replayed']} replayed, {result['joins']} join "
                      f"events) {result['storm_s']:.2f}s: {result['ratio']:.2f}x "
                      f"(server CPU {result['cpu_ratio']:.2f}x)", flush=True)
    finally:
        procs.stop_all()
    for key in ("ratio", "cpu_ratio", "handshakes_s", "storm_s"):
        figures[key] = statistics.median(r[key] for r in figures["rounds"])
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print(f"storm / bare handshakes, median of {rounds}: {figures['ratio']:.2f}x "
              f"({figures['storm_s']:.2f}s / {figures['handshakes_s']:.2f}s); server CPU "
              f"{figures['cpu_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
