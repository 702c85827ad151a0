"""The five scenarios, each as one worker's share of the work, in four phases.

`setup` opens this worker's connections (and subscribes them); `measure` makes the traffic
until the shared end time; `expect` says how many messages this worker should still see given
what every worker published; `drain` waits for them; `teardown` closes everything politely.
A worker owns the global client indices i with i % processes == its index, so ramps, rooms
and source addresses interleave evenly across processes.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

import gevent
from gevent.lock import Semaphore
from gevent.pool import Group, Pool

from wsapp.loadtest import client
from wsapp.loadtest.client import ClientError, Connection, Target
from wsapp.loadtest.options import Config
from wsapp.loadtest.stats import WorkerStats
from wsapp.websocket import frames


# Seconds teardown waits for close handshakes before dropping the rest: servers close a few
# thousand connections per second, so the wait grows with the count (bounded).
def _close_wait(n: int) -> float:
    return min(30.0, 5.0 + n / 1000.0)


def pace(rate: float, start: float, end: float, send: Callable[[int, float], None]) -> int:
    """Call send(k, due_time) for k = 0, 1, ... at `rate` per second from `start` until `end`.

    Open loop: a late call still carries its due time, so a stalled sender shows up as
    latency instead of silently sending less (no coordinated omission). Returns the count.
    """
    if rate <= 0:
        gevent.sleep(max(0.0, end - time.time()))
        return 0
    total = max(0, math.ceil((end - start) * rate - 1e-9))
    k = 0
    while k < total:
        now = time.time()
        # Past the end, whatever was due still goes out (late, with its due time).
        due_count = total if now >= end else min(int((now - start) * rate) + 1, total)
        burst = 0
        while k < due_count:
            send(k, start + k / rate)
            k += 1
            burst += 1
            if burst % 64 == 0:
                gevent.sleep(0)  # let readers run during a large burst
        if k < total:
            gevent.sleep(min(max(start + k / rate - time.time(), 0.001), 0.05))
    gevent.sleep(max(0.0, end - time.time()))
    return k


class Scenario:
    """Shared machinery: opening connections with ramp and concurrency, readers, teardown."""

    def __init__(self, cfg: Config, index: int, stats: WorkerStats) -> None:
        self.cfg = cfg
        self.index = index
        self.stats = stats
        self.indices = list(range(index, cfg.connections, cfg.processes))
        self.conns: dict[int, Connection] = {}
        self.readers: dict[int, gevent.Greenlet] = {}
        self.stopping = False
        self.measuring = False
        target = Target.parse(cfg.url)
        if cfg.token:
            target = target.with_query(token=quote(cfg.token, safe=""))
        self.target = target
        self.headers = {"Origin": cfg.origin} if cfg.origin else {}

    # -- connections -------------------------------------------------------------------

    def source_ip(self, i: int) -> str | None:
        """Round-robin over --source-ips by global client index."""
        ips = self.cfg.source_ips
        return ips[i % len(ips)] if ips else None

    def open_one(self, i: int, since: float | None = None) -> Connection | None:
        """Connect client `i`, start its reader; count the outcome. None on failure.

        The connect time counts from `since` (wall clock) when given, else from now.
        """
        st = self.stats
        st.attempted += 1
        t0 = time.time() if since is None else since
        try:
            conn = client.connect(self.target, source_ip=self.source_ip(i),
                                  timeout=self.cfg.connect_timeout, headers=self.headers)
        except ClientError as exc:
            st.record_error(exc.kind, str(exc))
            return None
        st.record_open((time.time() - t0) * 1000.0)
        conn.tag = i
        self.conns[i] = conn
        self.readers[i] = gevent.spawn(self._read, i, conn)
        return conn

    def _read(self, i: int, conn: Connection) -> None:
        try:
            conn.run(self.on_message, self.on_pong)
        except ClientError as exc:
            if not self.stopping:
                self.stats.record_error(exc.kind, str(exc))
        except Exception as exc:  # a bug in a handler must not kill the whole worker silently
            self.stats.record_error("client_bug", repr(exc))
            conn.abort()
        finally:
            self.stats.record_closed()
            self.conns.pop(i, None)
            self.readers.pop(i, None)

    def open_all(self, after_open: Callable[[Connection], None] | None = None) -> None:
        """Open this worker's connections, spread over --ramp, at most --connect-concurrency
        handshakes in flight (so a burst does not overflow the server's accept backlog)."""
        cfg = self.cfg
        pool = Pool(max(1, cfg.connect_concurrency))
        start = time.time()

        def one(i: int) -> None:
            conn = self.open_one(i)
            if conn is not None and after_open is not None:
                try:
                    after_open(conn)
                except OSError as exc:
                    self.stats.record_error(client.classify_oserror(exc, "write").kind, str(exc))
                    conn.abort()

        for i in self.indices:
            if cfg.ramp > 0:
                delay = start + cfg.ramp * i / cfg.connections - time.time()
                if delay > 0:
                    gevent.sleep(delay)
            pool.spawn(one, i)
        pool.join()

    def send(self, conn: Connection, fn: Callable[[], int]) -> bool:
        """Run a send; on a socket error count it and drop the connection."""
        try:
            n = fn()
        except OSError as exc:
            if not conn.closed:
                self.stats.record_error(client.classify_oserror(exc, "write").kind, str(exc))
            conn.abort()
            return False
        self.stats.record_sent(n)
        return True

    # -- phases --------------------------------------------------------------------------

    def setup(self) -> None:
        """Open connections (default: all of this worker's, no subscription)."""
        self.open_all()

    def measure(self, start: float, end: float) -> None:
        """Make traffic from `start` to `end` (wall clock)."""
        gevent.sleep(max(0.0, end - time.time()))

    def published(self) -> dict[str, int]:
        """Channel -> publishes this worker made (for the other workers' expectations)."""
        return dict(self.stats.published)

    def expect(self, published: dict[str, int]) -> int:
        """How many messages this worker should have received by the end of the drain."""
        return self.stats.sent

    def drain(self, expected: int, deadline: float) -> None:
        """Wait until `expected` messages arrived or the deadline passes; count the rest lost."""
        self.stats.expected = expected
        while self.stats.received < expected and time.time() < deadline:
            gevent.sleep(0.02)
        self.stats.record_error("lost", f"{expected - self.stats.received} of {expected} "
                                "messages had not arrived by the end of the drain",
                                expected - self.stats.received)
        # From here on, arrivals are late (already counted lost), not received.
        self.stats.books_closed = True

    def teardown(self) -> None:
        """Close every connection with a close handshake, then drop stragglers."""
        self.stopping = True
        for conn in list(self.conns.values()):
            conn.close()
            gevent.sleep(0)
        gevent.joinall(list(self.readers.values()), timeout=_close_wait(len(self.readers)))
        for conn in list(self.conns.values()):
            conn.abort()
        gevent.joinall(list(self.readers.values()), timeout=1.0)

    # -- handlers --------------------------------------------------------------------------

    def on_message(self, conn: Connection, opcode: int, payload: bytes) -> None:
        """A data message arrived (default: ignore)."""

    def on_pong(self, conn: Connection, payload: bytes) -> None:
        """A pong arrived: if it carries our stamp, it measures a round trip."""
        if len(payload) >= client.STAMP.size:
            now = time.time()
            sent_at, _ = client.read_stamp(payload)
            self.stats.bytes_received += len(payload)
            self.stats.record_latency((now - sent_at) * 1000.0, now)


class Idle(Scenario):
    """Open N connections and hold them; at the end, ping each once to prove it is alive."""

    def measure(self, start: float, end: float) -> None:
        # One stamped ping per connection, paced over the end of the hold at about 1000/s in
        # all (at least 2 s) so the probe itself is not a burst; each pong is a round trip.
        window = min(end - start, max(2.0, self.cfg.connections / 1000.0))
        gevent.sleep(max(0.0, end - window - time.time()))
        conns = list(self.conns.values())
        probe_start = max(start, end - window)

        def probe(k: int, due: float) -> None:
            conn = conns[k]
            if not conn.closed:
                self.send(conn, lambda: conn.send_ping(
                    client.stamped(due, k, client.STAMP.size)))

        if conns:
            pace(len(conns) / max(end - probe_start, 0.1), probe_start, end, probe)
        gevent.sleep(max(0.0, end - time.time()))


class Echo(Scenario):
    """N clients send --size byte binary messages; ping-pong (rate 0) or R msgs/s each."""

    def __init__(self, cfg: Config, index: int, stats: WorkerStats) -> None:
        super().__init__(cfg, index, stats)
        self.end = 0.0
        self.size = max(cfg.size, client.STAMP.size)

    def measure(self, start: float, end: float) -> None:
        self.end = end
        self.measuring = True
        if self.cfg.rate <= 0:
            # Ping-pong: each echo triggers the next send from the reader (see on_message).
            for k, conn in enumerate(list(self.conns.values())):
                self.send(conn, lambda c=conn, k=k: c.send_binary(
                    client.stamped(time.time(), k, self.size)))
                if k % 64 == 63:
                    gevent.sleep(0)
            gevent.sleep(max(0.0, end - time.time()))
        else:
            conns = list(self.conns.values())
            if not conns:
                gevent.sleep(max(0.0, end - time.time()))
                return

            def send(k: int, due: float) -> None:
                conn = conns[k % len(conns)]
                if not conn.closed:
                    self.send(conn, lambda: conn.send_binary(client.stamped(due, k, self.size)))

            pace(self.cfg.rate * len(conns), start, end, send)
        self.measuring = False

    def on_message(self, conn: Connection, opcode: int, payload: bytes) -> None:
        """An echo came back: record its round trip; in ping-pong mode send the next one."""
        now = time.time()
        st = self.stats
        st.bytes_received += len(payload)
        if opcode != frames.OP_BINARY or len(payload) < client.STAMP.size:
            st.record_error("unexpected_message", f"opcode {opcode}, {len(payload)} bytes")
            return
        sent_at, seq = client.read_stamp(payload)
        st.record_latency((now - sent_at) * 1000.0, now)
        if self.cfg.rate <= 0 and self.measuring and now < self.end and not conn.closed:
            self.send(conn, lambda: conn.send_binary(client.stamped(time.time(), seq + 1,
                                                                    self.size)))


class Churn(Scenario):
    """Open connections at --rate per second (all processes together), each living
    connections/rate seconds (so about --connections are open at once), one ping each."""

    def __init__(self, cfg: Config, index: int, stats: WorkerStats) -> None:
        super().__init__(cfg, index, stats)
        self.group = Group()

    def setup(self) -> None:
        """Nothing to open ahead: churn opens during the measurement."""

    def measure(self, start: float, end: float) -> None:
        cfg = self.cfg
        lifetime = cfg.connections / max(cfg.rate, 1e-9)
        handshakes = Semaphore(max(1, cfg.connect_concurrency))

        def life(k: int, due: float) -> None:
            i = self.index + k * cfg.processes
            with handshakes:
                if self.stopping:
                    return
                # Connect time counts from when the connect was due, so a client that falls
                # behind its schedule shows it as connect latency.
                conn = self.open_one(i, since=due)
            if conn is None:
                return
            self.send(conn, lambda: conn.send_ping(client.stamped(time.time(), k,
                                                                  client.STAMP.size)))
            gevent.sleep(max(0.0, due + lifetime - time.time()))
            conn.close()

        # Each worker takes every P-th slot of the global schedule, so connects interleave.
        share = cfg.rate / cfg.processes
        offset = self.index / max(cfg.rate, 1e-9)
        pace(share, start + offset, end, lambda k, due: self.group.spawn(life, k, due))

    def teardown(self) -> None:
        self.stopping = True
        super().teardown()
        self.group.kill(timeout=1.0)


class Rooms(Scenario):
    """Shared by broadcast and chat: the /ws JSON protocol (subscribe, publish, deliveries)."""

    track_deliveries = False

    def __init__(self, cfg: Config, index: int, stats: WorkerStats) -> None:
        super().__init__(cfg, index, stats)
        self.channel_of: dict[int, str] = {}
        self.subscribed: set[int] = set()
        # request id -> (kind, channel, published by one of this worker's room members)
        self.pending: dict[int, tuple[str, str, bool]] = {}
        self.self_published: Counter[str] = Counter()
        self.next_id = 1
        self.pad = ""

    def request_id(self) -> int:
        """A request id unique within this worker (replies are matched on it)."""
        self.next_id += 1
        return self.next_id

    def channel_for(self, i: int) -> str:
        """Which channel client `i` subscribes to."""
        raise NotImplementedError

    def setup(self) -> None:
        def subscribe(conn: Connection) -> None:
            i = conn.tag
            assert isinstance(i, int)
            ch = self.channel_for(i)
            self.channel_of[i] = ch
            rid = self.request_id()
            self.pending[rid] = ("subscribe", ch, False)
            conn.send_json({"op": "subscribe", "channel": ch, "id": rid})

        self.open_all(subscribe)
        # Wait for the subscribe replies (bounded by the connect timeout).
        deadline = time.time() + self.cfg.connect_timeout
        while time.time() < deadline and any(e[0] == "subscribe" for e in self.pending.values()):
            gevent.sleep(0.02)
        for rid, (kind, ch, _own) in list(self.pending.items()):
            if kind == "subscribe":
                self.stats.record_error("subscribe_timeout", f"no reply to subscribe {ch}")
                del self.pending[rid]
        self.stats.subscribed = len(self.subscribed)

    def publish(self, conn: Connection, ch: str, due: float, seq: int, *,
                own: bool = False, extra: dict[str, object] | None = None) -> None:
        """Publish a stamped message on `ch`; count it for the subscribers' expectations.

        `own` marks a publisher that is itself subscribed to `ch` (chat), whose copy of its
        own message is not a delivery.
        """
        data: dict[str, object] = {"t": due, "seq": seq}
        if extra:
            data.update(extra)
        if self.pad:
            data["pad"] = self.pad
        rid = self.request_id()
        self.pending[rid] = ("publish", ch, own)
        if self.send(conn, lambda: conn.send_json({"op": "publish", "channel": ch,
                                                   "data": data, "id": rid})):
            self.stats.published[ch] = self.stats.published.get(ch, 0) + 1
            if own:
                self.self_published[ch] += 1
        else:
            self.pending.pop(rid, None)

    def on_message(self, conn: Connection, opcode: int, payload: bytes) -> None:
        """Deliveries measure latency; replies settle subscribes and publishes."""
        now = time.time()
        st = self.stats
        st.bytes_received += len(payload)
        try:
            msg = json.loads(payload)
            op = msg.get("op")
        except (ValueError, AttributeError):
            st.record_error("unexpected_message", repr(payload[:100]))
            return
        if op == "message":
            data = msg.get("data")
            if not isinstance(data, dict) or "t" not in data:
                return  # someone else's traffic on the channel
            if "c" in data and data["c"] == conn.tag:
                return  # chat: our own message coming back is not a delivery to count
            sent_at = float(data["t"])
            st.record_latency((now - sent_at) * 1000.0, now)
            if self.track_deliveries:
                st.record_delivery(int(data.get("seq", 0)), sent_at, now)
        elif op == "ok":
            entry = self.pending.pop(msg.get("id"), None)
            if entry and entry[0] == "subscribe" and isinstance(conn.tag, int):
                self.subscribed.add(conn.tag)
        elif op == "error":
            entry = self.pending.pop(msg.get("id"), None)
            code = msg.get("code", "?")
            what = entry[0] if entry else "request"
            st.record_error(f"server_error_{code}",
                            f"{what} refused: {code} {msg.get('reason', '')}")
            if entry and entry[0] == "publish":
                # Nobody will receive a refused publish: take it out of the expectations.
                st.published[entry[1]] = st.published.get(entry[1], 0) - 1
                if entry[2]:
                    self.self_published[entry[1]] -= 1

    def members(self) -> Counter[str]:
        """Channel -> this worker's subscribers still connected."""
        out: Counter[str] = Counter()
        for i in self.subscribed:
            if i in self.conns:
                out[self.channel_of[i]] += 1
        return out

    def expect(self, published: dict[str, int]) -> int:
        members = self.members()
        total = sum(n * members.get(ch, 0) for ch, n in published.items())
        # A chat publisher is a member of its own room but does not count its own message.
        return total - sum(n for ch, n in self.self_published.items() if members.get(ch))


class Broadcast(Rooms):
    """N subscribers on one channel; one publisher (worker 0) at --rate msgs/s. Reports the
    latency to the first and to the last receiver of each message."""

    track_deliveries = True

    # The server limits each connection's messages/s (100 by default): above this rate the
    # publishes are spread over several publisher connections.
    PER_PUBLISHER = 50.0

    def __init__(self, cfg: Config, index: int, stats: WorkerStats) -> None:
        super().__init__(cfg, index, stats)
        self.publishers: list[Connection] = []
        self.pad = "x" * max(0, cfg.size - 40)

    def channel_for(self, i: int) -> str:
        return self.cfg.channel

    def setup(self) -> None:
        super().setup()
        if self.index != 0:
            return
        # Publishers are extra connections (worker 0), not among --connections.
        for n in range(max(1, math.ceil(self.cfg.rate / self.PER_PUBLISHER))):
            try:
                pub = client.connect(self.target, timeout=self.cfg.connect_timeout,
                                     headers=self.headers)
            except ClientError as exc:
                self.stats.record_error("publisher_" + exc.kind, str(exc))
                continue
            pub.tag = -1 - n
            self.publishers.append(pub)
            self.readers[pub.tag] = gevent.spawn(self._read_publisher, pub)

    def _read_publisher(self, conn: Connection) -> None:
        try:
            conn.run(self.on_message)
        except ClientError as exc:
            if not self.stopping:
                self.stats.record_error("publisher_" + exc.kind, str(exc))
        finally:
            if isinstance(conn.tag, int):
                self.readers.pop(conn.tag, None)

    def measure(self, start: float, end: float) -> None:
        pubs = self.publishers
        if not pubs:
            gevent.sleep(max(0.0, end - time.time()))
            return

        def send(k: int, due: float) -> None:
            pub = pubs[k % len(pubs)]
            if not pub.closed:
                self.publish(pub, self.cfg.channel, due, k)

        pace(self.cfg.rate, start, end, send)

    def teardown(self) -> None:
        for pub in self.publishers:
            pub.close()
        super().teardown()


class Chat(Rooms):
    """N clients over --rooms rooms, each subscribed to one and publishing to it at --rate
    msgs/s per client; every other member of the room should receive each message."""

    def __init__(self, cfg: Config, index: int, stats: WorkerStats) -> None:
        super().__init__(cfg, index, stats)
        self.rooms = cfg.rooms or max(1, cfg.connections // 10)
        self.pad = "x" * max(0, cfg.size - 48)

    def channel_for(self, i: int) -> str:
        return f"{self.cfg.channel}-{i % self.rooms}"

    def measure(self, start: float, end: float) -> None:
        clients = [i for i in self.indices if i in self.subscribed]
        if not clients:
            gevent.sleep(max(0.0, end - time.time()))
            return

        def send(k: int, due: float) -> None:
            i = clients[k % len(clients)]
            conn = self.conns.get(i)
            if conn is not None and not conn.closed:
                self.publish(conn, self.channel_of[i], due, k, own=True, extra={"c": i})

        pace(self.cfg.rate * len(clients), start, end, send)


SCENARIO_CLASSES: dict[str, type[Scenario]] = {
    "idle": Idle, "echo": Echo, "broadcast": Broadcast, "churn": Churn, "chat": Chat,
}


def default_channel() -> str:
    """A fresh channel name per run, so two runs (or old messages) never mix."""
    return f"room:loadtest-{uuid.uuid4().hex[:8]}"
