"""Chaos: two serve.py processes on one Redis with AOF, everything failing in turn, and not
one accepted message lost.

The run (about a minute; every loop bounded in count and time):

- a redis-server of our own with `--appendonly yes --appendfsync always`, so a restart keeps
  everything it acknowledged; two serve.py processes on it (through a TCP proxy, see below),
  each consuming one Redis Stream feed (docs/feeds.md) on that same Redis;
- 6 users with 2 tabs each (resuming.py: the JS client's documented behaviour — resume with
  `since`, an offset jump resubscribes, `history_lost` names what is gone, personal messages
  acked, duplicates dropped by id), every tab in both rooms, each dropping its connection at
  random every 1-6 s and reconnecting to either process; one tab per user publishes over /ws;
- pushes through `POST /api/push` (retried with their `key` until answered, as docs/api.md
  tells producers), pushes and room publishes through the feed, room publishes through
  `POST /api/publish`;
- meanwhile: a process SIGKILLed and restarted (three times), one process's bus connection
  cut (twice), Redis SIGKILLed and started again on the same port and files (twice), and
  replies lost (twice, three times over): the proxy holds what Redis answers, then breaks
  every connection, so each process has a write that Redis carried out and never answered
  — the case where a publish once said "not stored" about a stored message.

Then the producers stop, the feed drains, the tabs stop dropping, and the run is counted from
the store (history and push records) and what each tab received:

- losses: a room offset a tab never got without being told `history_lost`, and a stored or
  accepted push (API answer delivered/stored, a feed message applied) that none of its
  user's tabs got — counted once the tabs settled (room offsets must all be there already)
  and again after every tab reconnected once (personal messages stay due until acked and
  come on connect);
- truthful answers: a publish answered `offset: null` or refused outright is not in history;
  one answered with an offset is there, at that offset; one answered 503 "may be stored" (or
  not answered: its process was killed) is there at most once, and if it is, every tab got it;
- exactly once in effect: each feed message and each keyed push is applied at most once;
- exactly once, in order, per tab: no room message comes twice — except what was on its way
  when the tab resubscribed with `since` while subscribed (a retry after Redis refused, or
  a gap): the server cannot know of those, and the client drops them by id — or after a
  later offset.

The figures are printed (`pytest -s`); the losses must be 0. WSAPP_CHAOS_SEED=N replays the
same random choices (the threads still interleave as they will).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import redis
from feedsources import RedisStreamSource
from redisproc import RedisServer
from tcpproxy import TcpProxy

from wsapp.realtime.auth import Tokens

from .conftest import API_KEY, SECRET, Cluster, ClusterServer
from .resuming import MAYBE, NULL, REFUSED, STORED, ResumingClient, outcome_of_error

AUTH = {"Authorization": f"Bearer {API_KEY}"}
USERS = [f"chaos{i}" for i in range(6)]
TABS = 2
ROOMS = ["room:chaos-a", "room:chaos-b"]
HISTORY = 100_000  # far more than a run publishes: nothing leaves history, so no history_lost
ACCEPTED = "accepted"  # a push answered delivered/stored, or a feed message XADDed
# (seconds after the previous step, what happens); processes are killed in turn
SCHEDULE = [
    (3.0, "kill process"), (1.5, "restart process"),
    (3.0, "cut bus"),
    (3.0, "lose replies"),
    (3.5, "kill redis"), (2.5, "start redis"),
    (4.5, "kill process"), (1.0, "restart process"),
    (3.0, "lose replies"),
    (3.5, "kill redis"), (1.5, "start redis"),
    (3.0, "cut bus"),
    (3.5, "kill process"), (2.0, "restart process"),
    (4.0, "end"),
]
SETTLE = 45.0  # seconds the run may take to converge after the chaos, each phase


class Live:
    """The serve.py processes now running: what the tabs and producers pick from."""

    def __init__(self, servers: list[ClusterServer]) -> None:
        self.lock = threading.Lock()
        self.servers = list(servers)

    def ports(self) -> list[int]:
        with self.lock:
            return [s.port for s in self.servers]

    def pick(self, rng: random.Random) -> ClusterServer | None:
        with self.lock:
            return rng.choice(self.servers) if self.servers else None

    def take(self, index: int) -> ClusterServer:
        with self.lock:
            return self.servers.pop(index % len(self.servers))

    def add(self, server: ClusterServer) -> None:
        with self.lock:
            self.servers.append(server)


class Ledger:
    """Everything the producers sent and what each answer said."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.publishes: list[tuple[str, str, int | None, str]] = []  # data, outcome, offset, via
        self.pushes: list[tuple[str, str, str, str]] = []  # user, data, outcome, via
        self.odd: list[str] = []  # answers no client of the documented API should get

    def publish(self, data: str, outcome: str, offset: int | None, via: str) -> None:
        with self.lock:
            self.publishes.append((data, outcome, offset, via))

    def push(self, user: str, data: str, outcome: str, via: str) -> None:
        with self.lock:
            self.pushes.append((user, data, outcome, via))


def post(server: ClusterServer, path: str, body: dict) -> tuple[str, dict]:
    """(outcome, body) of one API call: STORED (200), REFUSED, MAYBE (503 "may be stored", or
    no answer: the process died with the request in hand)."""
    try:
        status, _, raw = server.http("POST", path, body, AUTH, timeout=10)
    except ConnectionRefusedError:
        return REFUSED, {}  # nothing listened: never sent
    except OSError as exc:
        return MAYBE, {"error": repr(exc)}
    answer = json.loads(raw)
    if status == 200:
        return STORED, answer
    if status == 503:
        return outcome_of_error(answer["reason"]), answer
    return "odd", {"status": status, **answer}


def api_publisher(live: Live, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    """Room publishes through POST /api/publish, to either process, one at a time."""
    for n in range(1, 3000):
        if stop.is_set():
            return
        server = live.pick(rng)
        if server is None:
            time.sleep(0.05)
            continue
        data = f"api-{n}"
        outcome, answer = post(server, "/api/publish",
                               {"channel": rng.choice(ROOMS), "data": data})
        if outcome == STORED:
            offset = answer["offset"]
            ledger.publish(data, NULL if offset is None else STORED, offset, "api")
        elif outcome == "odd":
            ledger.odd.append(f"publish {data}: {answer}")
        else:
            ledger.publish(data, outcome, None, "api")
        time.sleep(rng.uniform(0.02, 0.06))


def api_pusher(tag: str, live: Live, ledger: Ledger, rng: random.Random,
               stop: threading.Event) -> None:
    """Pushes through POST /api/push; each retried with its key until it is accepted."""
    for n in range(1, 1500):
        if stop.is_set():
            return
        user, data = rng.choice(USERS), f"push-{tag}-{n}"
        fate = REFUSED
        for _ in range(60):  # ~15 s: longer than any outage in the schedule
            server = live.pick(rng)
            if server is None:
                time.sleep(0.25)
                continue
            outcome, answer = post(server, "/api/push", {"user": user, "data": data,
                                                         "key": data})
            if outcome == STORED:
                if answer.get("status") not in ("delivered", "stored"):
                    ledger.odd.append(f"push {data}: {answer}")
                fate = ACCEPTED
                break
            if outcome == "odd":
                ledger.odd.append(f"push {data}: {answer}")
            if outcome == MAYBE:
                fate = MAYBE
            time.sleep(0.25)
        ledger.push(user, data, fate, "api")
        time.sleep(rng.uniform(0.05, 0.15))


def feed_producer(port: int, source: RedisStreamSource, ledger: Ledger, rng: random.Random,
                  stop: threading.Event) -> None:
    """Pushes (4 in 5) and room publishes into the Redis Stream, each with its key, XADD
    retried until Redis takes it (a retry may add it twice: the key makes that a no-op)."""
    client = redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=2)
    try:
        for n in range(1, 3000):
            if stop.is_set():
                return
            data = f"feed-{n}"
            if rng.random() < 0.8:
                target = rng.choice(USERS)
                message = {"op": "push", "user": target, "data": data, "key": data}
            else:
                target = rng.choice(ROOMS)
                message = {"op": "publish", "channel": target, "data": data, "key": data}
            fate = REFUSED
            for _ in range(60):
                try:
                    client.xadd(source.stream, {"message": json.dumps(message)})
                except (redis.RedisError, OSError):
                    fate = MAYBE
                    time.sleep(0.25)
                    continue
                fate = ACCEPTED
                break
            if message["op"] == "push":
                ledger.push(target, data, fate, "feed")
            else:
                ledger.publish(data, fate, None, "feed")
            time.sleep(rng.uniform(0.03, 0.09))
    finally:
        client.close()


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll `check` until true; the seconds it took. AssertionError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not reached in {timeout:.0f}s")
        time.sleep(0.2)
    return time.monotonic() - started


def get(live: Live, path: str) -> dict:
    """GET from whichever process answers (all are up and on Redis by now)."""
    server = live.pick(random.Random())
    status, _, raw = server.http("GET", path, headers=AUTH, timeout=30)
    assert status == 200, (path, status, raw[:500])
    return json.loads(raw)


def room_history(live: Live, room: str) -> dict[int, str]:
    """Every message of `room` in the store: offset -> data."""
    out: dict[int, str] = {}
    since = 0
    for _ in range(1000):
        page = get(live, f"/api/history?channel={room}&since={since}&limit=1000")
        for m in page["messages"]:
            out[m["offset"]] = m["data"]
        if not page["messages"]:
            assert sorted(out) == list(range(1, page["last_offset"] + 1)), \
                f"{room}: history has holes or was trimmed"
            return out
        since = page["messages"][-1]["offset"]
    raise AssertionError("history longer than a run can publish")


def cut_bus(admin: redis.Redis, server: ClusterServer) -> int:
    """Kill `server`'s bus connection alone (it may still be reconnecting: wait for it)."""
    name = f"wsapp-bus-{server.proc.pid}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for client in admin.client_list():
            if client["name"] == name:
                admin.client_kill_filter(_id=client["id"])
                return 1
        time.sleep(0.2)
    return 0


def feed_drained(admin: redis.Redis, source: RedisStreamSource) -> bool:
    """Every entry read by the group and acknowledged (dead consumers' claimed too)."""
    try:
        groups = admin.xinfo_groups(source.stream)
    except redis.RedisError:
        return False
    return all(g["pending"] == 0 and g.get("lag") == 0 for g in groups)



class ViaProxy:
    """Redis as the serve.py processes see it: through a TcpProxy (the Cluster's `redis`)."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.proxy.port}/0?prefix={prefix}"


class Chaos:
    """One run: Redis, the processes, the tabs, the producers; `close()` stops all of it."""

    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.cleanup = ExitStack()
        self.redis = RedisServer(tmp_path / "redis", aof=True).start()
        self.cleanup.callback(self.redis.stop)
        self.proxy = TcpProxy(self.redis.port).start()
        self.cleanup.callback(self.proxy.stop)
        self.admin = redis.Redis(port=self.redis.port, socket_timeout=5,
                                 socket_connect_timeout=2)
        self.cleanup.callback(self.admin.close)
        self.source = RedisStreamSource(self.redis.port)
        self.cleanup.callback(self._close_source)
        self.cluster = Cluster(tmp_path, ViaProxy(self.proxy))
        self.cleanup.callback(self.cluster.stop_all)
        self.flags = ("--history-size", str(HISTORY), "--feed", self.source.url())
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.tabs: list[ResumingClient] = []
        self.producers: list[threading.Thread] = []
        self.cleanup.callback(self._stop_threads)
        self.steps: Counter = Counter()
        self.live = Live([])

    def _close_source(self) -> None:
        try:
            self.source.close()
        except redis.RedisError:
            pass  # Redis is gone with it

    def _stop_threads(self) -> None:
        self.stopping.set()
        for tab in self.tabs:
            tab.stop()
        for thread in [*self.tabs, *self.producers]:
            thread.join(20)

    def close(self) -> None:
        self.cleanup.close()

    def _seeded(self) -> random.Random:
        return random.Random(self.rng.random())

    def start(self) -> None:
        """Two processes, every tab connected and subscribed, then the producers."""
        for server in self.cluster.start(2, *self.flags):
            self.live.add(server)
        tokens = Tokens(secret=SECRET.encode())
        for user in USERS:
            token, _ = tokens.mint(user, 3600)
            for tab in range(TABS):
                self.tabs.append(ResumingClient(user, token, ROOMS, self.live.ports,
                                                self._seeded(), name=f"{user}.{tab}",
                                                publish_every=1.0 if tab == 0 else None))
        for tab in self.tabs:
            tab.start()
        wait_until("every tab connected and subscribed",
                   lambda: all(t.connects and t.settled() for t in self.tabs), 30)
        args = (self.live, self.ledger)
        self.producers = [
            threading.Thread(target=api_publisher, args=(*args, self._seeded(), self.stopping)),
            *[threading.Thread(target=api_pusher, args=(tag, *args, self._seeded(),
                                                        self.stopping)) for tag in "ab"],
            threading.Thread(target=feed_producer, args=(self.redis.port, self.source,
                                                         self.ledger, self._seeded(),
                                                         self.stopping)),
        ]
        for thread in self.producers:
            thread.start()

    def run_schedule(self) -> None:
        for pause, step in SCHEDULE:
            time.sleep(pause)
            if step == "kill process":
                self.live.take(0).kill9()  # the oldest: each process in turn
            elif step == "restart process":
                self.live.add(self.cluster.add(*self.flags))
            elif step == "cut bus":
                if not cut_bus(self.admin, self.live.pick(self.rng)):
                    continue
            elif step == "lose replies":
                self.lose_replies()
            elif step == "kill redis":
                self.redis.kill()
            elif step == "start redis":
                self.redis.start(port=self.redis.port)
            self.steps[step] += 1

    def lose_replies(self, times: int = 3) -> None:
        """Redis carries out what it is asked, then the connections break before a reply
        (or a bus message) gets through. Each time, each process's write in flight is
        stored unanswered: its publishes and pushes must answer "may be stored"."""
        for _ in range(times):
            self.proxy.hold_replies()
            time.sleep(0.2)
            self.proxy.stop()
            self.proxy.start()
            time.sleep(0.6)  # the processes reconnect (their first retries: 0.05-0.45 s)

    def settle(self) -> dict:
        """Stop producing, drain the feed, let the tabs catch up; what had to arrive."""
        self.stopping.set()
        for tab in self.tabs:
            tab.calm()
        for thread in self.producers:
            thread.join(60)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        drained = wait_until("the feed drained", lambda: feed_drained(self.admin, self.source),
                             SETTLE)
        # What must have arrived: every room offset in the store, every push stored.
        self.history = {room: room_history(self.live, room) for room in ROOMS}
        self.records: dict[str, Counter] = {}
        for user in USERS:
            messages = get(self.live, f"/api/users/{user}/messages?limit=1000")["messages"]
            assert len(messages) < 1000, "more pushes than one page of records"
            self.records[user] = Counter(m["data"] for m in messages)
        try:
            caught_up = wait_until("every tab caught up without reconnecting", self.converged,
                                   SETTLE)
        except AssertionError:
            caught_up = None
        missing_live = self.missing()  # rooms must be 0; pushes may wait for the next connect
        before = [t.connects for t in self.tabs]
        for tab in self.tabs:
            tab.reconnect()
        wait_until("every tab reconnected and caught up",
                   lambda: all(t.connects > n for t, n in zip(self.tabs, before, strict=True))
                   and self.converged(), SETTLE)
        return {"feed drained in s": round(drained, 1),
                "caught up without reconnecting in s": caught_up and round(caught_up, 1),
                "missing before the final reconnect (rooms, pushes)": missing_live}

    def missing(self) -> tuple[int, int]:
        """(room offsets, pushes) the tabs do not have yet."""
        rooms = pushes = 0
        got: dict[str, set[str]] = {user: set() for user in USERS}
        for tab in self.tabs:
            with tab.lock:
                for room in ROOMS:
                    state = tab.rooms[room]
                    rooms += sum(1 for o in self.history[room]
                                 if o not in state.got and o not in state.lost)
                got[tab.user].update(tab.personal.values())
        for user in USERS:
            pushes += len(self.records[user].keys() - got[user])
        return rooms, pushes

    def converged(self) -> bool:
        return all(t.settled() for t in self.tabs) and self.missing() == (0, 0)


def count(chaos: Chaos) -> tuple[dict, list[str]]:
    """The run's figures, and every broken promise found (see the module docstring)."""
    tabs, history, records = chaos.tabs, chaos.history, chaos.records
    problems: list[str] = list(chaos.ledger.odd)
    room_losses = 0
    for tab in tabs:
        problems += [f"{tab.name}: {e}" for e in tab.errors]
        for room in ROOMS:
            state = tab.rooms[room]
            gone = sorted(o for o in history[room] if o not in state.got and o not in state.lost)
            room_losses += len(gone)
            if gone:
                problems.append(f"{tab.name} never got {room} offsets {gone[:20]}")
            wrong = [o for o, data in state.got.items() if history[room].get(o) != data]
            if wrong:
                problems.append(f"{tab.name} got other data than history at {wrong[:20]}")

    stored_at: dict[str, list[int]] = {}
    for room in ROOMS:
        for offset, data in history[room].items():
            stored_at.setdefault(data, []).append(offset)
    published = list(chaos.ledger.publishes)
    for tab in tabs:
        published += [(data, outcome, offset, "ws") for data, outcome, offset in tab.published]
    maybe_stored = 0
    for data, outcome, offset, via in published:
        where = stored_at.get(data, [])
        if outcome == STORED and where != [offset]:
            problems.append(f"{via} publish {data} answered offset {offset}, stored at {where}")
        elif outcome == ACCEPTED and len(where) != 1:
            problems.append(f"feed publish {data} applied {len(where)} times")
        elif outcome == NULL and where:
            problems.append(f"{via} publish {data} answered offset null, stored at {where}")
        elif outcome == REFUSED and where:
            problems.append(f"{via} publish {data} refused as not stored, stored at {where}")
        elif outcome == MAYBE:
            maybe_stored += bool(where)  # then every tab got it: counted as room offsets
            if len(where) > 1:
                problems.append(f"{via} publish {data} stored {len(where)} times")

    received: dict[str, set[str]] = {user: set() for user in USERS}
    for tab in tabs:
        received[tab.user].update(tab.personal.values())
    for user, data, outcome, via in chaos.ledger.pushes:
        times = records[user][data]
        if outcome == ACCEPTED and times != 1:
            problems.append(f"{via} push {data} accepted, stored {times} times")
        elif outcome == REFUSED and times:
            problems.append(f"{via} push {data} refused as not stored, stored {times} times")
        elif times > 1:
            problems.append(f"{via} push {data} stored {times} times")
    push_losses = 0
    for user in USERS:  # every push stored: accepted ones (checked above) and "may be" ones
        never = sorted(records[user].keys() - received[user])
        push_losses += len(never)
        if never:
            problems.append(f"{user} never got pushes {never[:20]}")

    def total(what: str) -> int:
        return sum(getattr(t.rooms[r], what) for t in tabs for r in ROOMS)

    told_lost = sum(len(t.rooms[r].lost) for t in tabs for r in ROOMS)
    if told_lost:  # history keeps every message of a run: nothing may be reported lost
        problems.append(f"{told_lost} offsets reported history_lost")
    if total("out_of_order"):
        problems.append(f"{total('out_of_order')} room messages arrived after a later offset")
    if total("duplicates"):  # exactly once, but for what a resubscribe could not know of
        problems.append(f"{total('duplicates')} room messages sent to a tab twice")
    figures = {
        "room messages": sum(len(h) for h in history.values()),
        "pushes stored": sum(sum(c.values()) for c in records.values()),
        "publishes": Counter(f"{via} {outcome}" for _, outcome, _, via in published),
        "pushes": Counter(f"{via} {outcome}" for _, _, outcome, via in chaos.ledger.pushes),
        "may-be-stored publishes found stored": maybe_stored,
        "reconnects": sum(t.connects - 1 for t in tabs),
        "chaos": dict(chaos.steps),
        "gaps seen by tabs": total("gaps"),
        "replayed again after a resubscribe (dropped by id)": total("repeats"),
        "sent twice otherwise": total("duplicates"),
        "personal messages again (unacked)": sum(t.personal_repeats for t in tabs),
        "told history_lost": told_lost,
        "losses": room_losses + push_losses,
    }
    return figures, problems


def test_nothing_accepted_is_lost_while_processes_redis_and_buses_fail(tmp_path):
    seed = int(os.environ.get("WSAPP_CHAOS_SEED") or random.randrange(1 << 30))
    started = time.monotonic()
    chaos = Chaos(tmp_path, seed)
    try:
        chaos.start()
        chaos.run_schedule()
        chaos_s = time.monotonic() - started
        settled = chaos.settle()
    finally:
        chaos.close()
    figures, problems = count(chaos)
    figures = {"seed": seed, **figures, **settled, "chaos s": round(chaos_s, 1),
               "run s": round(time.monotonic() - started, 1)}
    print("\nchaos: " + json.dumps(figures, default=dict))
    assert not problems, "\n".join(problems[:50])
    assert figures["losses"] == 0
    assert settled["missing before the final reconnect (rooms, pushes)"][0] == 0, \
        "a settled tab was still missing room offsets"
    assert chaos.steps == {"kill process": 3, "restart process": 3, "kill redis": 2,
                           "start redis": 2, "cut bus": 2, "lose replies": 2, "end": 1}
