"""A /ws client that resumes the way docs/js-client.md says wsapp.js does, in a thread of its
own, for the chaos test (test_chaos.py).

What it does, as the JS client does: it reconnects whenever its connection dies (and, here,
also at random), to any live server; after every welcome it resubscribes each room with
`since` = the last offset it has; an offset that jumps means messages it never got, so it
holds what follows, resubscribes with `since`, and releases the held frames in offset order
(a reply with `history_lost` names the offsets gone for good); it drops duplicates by message
id and acks every personal message. Where the JS client gives up on a subscribe refused as
`unavailable` (Redis down) unless it is filling a gap, this one retries with backoff, as
docs/deploying.md tells clients to.

It records everything it got — each room's offsets, messages with offset null, personal
messages — and the fate of every publish it sent over /ws, so the test can count what never
arrived. All of that is read by the test thread under `lock`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from wsclient import RawClient

from wsapp.websocket.frames import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT

# Publish outcomes (the test checks each against the store's history afterwards).
STORED = "stored"  # answered with an offset: it must be in history at that offset
NULL = "null"  # answered offset null: "not stored", so it must not be in history
MAYBE = "maybe"  # 503/unavailable "may be stored", or no answer at all: either way
REFUSED = "refused"  # refused outright (unavailable without "may be", rate limit...): absent

RETRY_FIRST, RETRY_MAX = 0.25, 2.0  # a refused subscribe is asked again after this, doubling


def outcome_of_error(reason: str) -> str:
    """The fate of a publish answered with an error whose reason is `reason`."""
    return MAYBE if "may be" in reason and "stored" in reason else REFUSED


@dataclass
class Room:
    """One room as the client tracks it (the JS client's `sub`)."""

    last: int = 0  # the last offset it has (it subscribed first with since=0)
    held: list[dict] | None = None  # frames waiting behind a gap
    lost_below: int = 0  # while releasing after history_lost: offsets below are gone
    asking: Any = None  # the id of the subscribe in flight
    retry_at: float | None = None
    retry: float = 0.0
    answered: bool = False  # a subscribe was answered on this connection (even refused:
    # the server subscribes it anyway), so the next one overlaps a live subscription
    overlap: bool = False  # the subscribe in flight (or being released) does
    releasing: bool = False  # the frames held behind a gap are being released
    got: dict[int, str] = field(default_factory=dict)  # offset -> data, each offset once
    lost: set[int] = field(default_factory=set)  # offsets a reply said are gone
    gaps: int = 0
    repeats: int = 0  # messages in flight when it resubscribed, replayed again: unavoidable
    duplicates: int = 0  # any other message sent twice: the server's fault
    out_of_order: int = 0


class ResumingClient(threading.Thread):
    """One browser tab of `user`, subscribed to `rooms`, in a thread until `stop()`."""

    def __init__(self, user: str, token: str, rooms: list[str],
                 servers: Callable[[], list[int]], rng: random.Random, *,
                 drop_every: tuple[float, float] = (1.0, 6.0),
                 publish_every: float | None = None, name: str = "") -> None:
        super().__init__(name=name or f"client-{user}", daemon=True)
        self.user = user
        self.token = token
        self.own = f"user:{user}"
        self.rooms = {name: Room() for name in rooms}
        self.servers = servers
        self.rng = rng
        self.drop_every = drop_every
        self.publish_every = publish_every
        self.lock = threading.Lock()
        self.personal: dict[str, str] = {}  # msg id -> data, once each
        self.personal_repeats = 0  # the same personal message again (not acked in time)
        self.published: list[tuple[str, str, int | None]] = []  # (data, outcome, offset)
        self.connects = 0
        self.errors: list[str] = []  # what the server said that this client did not expect
        self._seen: set[str] = set()  # message ids delivered (the JS client's dedupe)
        self._halt = threading.Event()
        self._calm = threading.Event()  # no more random drops
        self._again = threading.Event()  # reconnect once, now
        self._ws: RawClient | None = None
        self._ids = iter(range(1, 1 << 62))
        self._asked: dict[int, tuple[str, Any]] = {}  # request id -> (op, room or data)
        self._published_n = 0

    # -- what the test calls ---------------------------------------------------------------

    def stop(self) -> None:
        self._halt.set()

    def calm(self) -> None:
        """Stop dropping the connection at random (a dead server still makes it reconnect)."""
        self._calm.set()

    def reconnect(self) -> None:
        """Drop the connection and connect again, once (resuming with `since`)."""
        self._again.set()

    def settled(self) -> bool:
        """Connected, nothing held, no subscribe or publish in flight or waiting."""
        with self.lock:
            return self._ws is not None and all(
                r.held is None and r.asking is None and r.retry_at is None
                for r in self.rooms.values()) and \
                not any(op == "publish" for op, _ in self._asked.values())

    # -- the thread --------------------------------------------------------------------------

    def run(self) -> None:
        attempt = 0
        while not self._halt.is_set():
            ports = self.servers()
            if not ports:
                time.sleep(0.1)
                continue
            try:
                ws = RawClient.open(self.rng.choice(ports), "/ws?token=" + quote(self.token),
                                    timeout=5)
            except (OSError, EOFError, AssertionError):
                attempt += 1
                # full jitter, as wsapp.js (faster: the test has little time)
                time.sleep(self.rng.uniform(0, min(1.0, 0.05 * 2 ** attempt)))
                continue
            attempt = 0
            try:
                self._session(ws)
            except (OSError, EOFError):
                pass  # the server died or closed: reconnect
            finally:
                with self.lock:
                    self._ws = None
                    for op, what in self._asked.values():
                        if op == "publish":  # sent, never answered: its fate is unknown
                            self.published.append((what, MAYBE, None))
                    self._asked.clear()
                    for room in self.rooms.values():
                        room.asking = None
                        room.retry_at = None
                ws.close()

    def _session(self, ws: RawClient) -> None:
        welcome = self._recv(ws, 10)
        if welcome is None or welcome.get("op") != "welcome":
            raise EOFError(f"no welcome: {welcome}")
        with self.lock:
            self._ws = ws
            self.connects += 1
            for name, room in self.rooms.items():
                room.held = None  # the replay brings those again
                room.retry = 0.0
                room.answered = False
                self._subscribe(name)
        self._again.clear()
        drop_at = time.monotonic() + self.rng.uniform(*self.drop_every)
        publish_at = self._next_publish()
        while not self._halt.is_set():
            now = time.monotonic()
            if self._again.is_set() or (not self._calm.is_set() and now >= drop_at):
                self._again.clear()
                if self.rng.random() < 0.5:
                    ws.send_close(1000)  # a tab closed
                return  # else a lost network: the socket just goes
            if publish_at is not None and now >= publish_at and not self._calm.is_set():
                self._publish()
                publish_at = self._next_publish()
            with self.lock:
                for name, room in self.rooms.items():
                    if room.retry_at is not None and now >= room.retry_at:
                        room.retry_at = None
                        self._subscribe(name)
            frame = self._recv(ws, 0.1)
            if frame is not None:
                with self.lock:
                    self._receive(frame)

    def _next_publish(self) -> float | None:
        if self.publish_every is None:
            return None
        return time.monotonic() + self.rng.uniform(0.5, 1.5) * self.publish_every

    # -- frames ------------------------------------------------------------------------------

    def _recv(self, ws: RawClient, timeout: float) -> dict | None:
        """The next JSON frame (None if nothing came in `timeout`); pings are answered."""
        try:
            frame = ws.recv_frame(timeout)
        except TimeoutError:
            return None
        if frame.opcode == OP_PING:
            self._send_frame(ws, OP_PONG, frame.payload)
            return None
        if frame.opcode == OP_CLOSE:
            raise EOFError("closed by the server")
        assert frame.opcode == OP_TEXT and frame.fin, frame
        return json.loads(frame.payload)

    def _send_frame(self, ws: RawClient, opcode: int, payload: bytes) -> None:
        ws.sock.settimeout(5)
        ws.send_frame(opcode, payload)

    def _request(self, op: str, what: Any, **fields: Any) -> int | None:
        """Send a request (under `lock`); its id, or None when not connected."""
        ws = self._ws
        if ws is None:
            return None
        rid = next(self._ids)
        self._asked[rid] = (op, what)
        try:
            self._send_frame(ws, OP_TEXT, json.dumps({"op": op, "id": rid, **fields}).encode())
        except OSError:
            pass  # the read loop sees the connection is gone
        return rid

    def _subscribe(self, name: str) -> None:
        room = self.rooms[name]
        room.retry_at = None
        room.overlap = room.answered
        room.asking = self._request("subscribe", name, channel=name, since=room.last)

    def _publish(self) -> None:
        self._published_n += 1
        data = f"ws-{self.name}-{self._published_n}"
        with self.lock:
            self._request("publish", data, channel=self.rng.choice(sorted(self.rooms)),
                          data=data)

    def _receive(self, frame: dict) -> None:
        op = frame.get("op")
        if op == "message":
            self._message(frame)
        elif op in ("ok", "error") and frame.get("id") in self._asked:
            kind, what = self._asked.pop(frame["id"])
            if kind == "subscribe":
                self._subscribed(what, frame)
            elif kind == "publish":
                if op == "ok":
                    offset = frame["offset"]
                    self.published.append((what, NULL if offset is None else STORED, offset))
                else:
                    self.published.append((what, outcome_of_error(frame["reason"]), None))
        elif op == "error":
            self.errors.append(json.dumps(frame))

    def _message(self, frame: dict) -> None:
        channel, offset = frame["channel"], frame["offset"]
        if channel == self.own:
            self._personal(frame)
            return
        room = self.rooms.get(channel)
        if room is None:
            return
        if offset is None:  # not stored: live only, never replayed
            return
        if room.held is not None:
            room.held.append(frame)
            return
        if offset > room.last + 1 and not offset <= room.lost_below:
            room.held = [frame]  # a jump: messages we never got
            room.gaps += 1
            if room.asking is None:
                self._subscribe(channel)
            return
        if frame["msg"] in self._seen:
            # Resubscribing with `since` while subscribed, what was on its way is replayed
            # too (the JS client drops it by id, as here); anything else is a fault.
            if room.overlap and (room.asking is not None or room.releasing):
                room.repeats += 1
            else:
                room.duplicates += 1
            return
        self._seen.add(frame["msg"])
        if offset in room.got:  # another message at an offset we have: a real fault
            self.errors.append(f"{channel} offset {offset}: {room.got[offset]!r} and "
                               f"{frame['data']!r}")
        if offset < room.last:
            room.out_of_order += 1
        room.got[offset] = frame["data"]
        room.last = max(room.last, offset)

    def _subscribed(self, name: str, reply: dict) -> None:
        room = self.rooms[name]
        room.answered = True
        room.asking = None
        if reply["op"] == "error":  # unavailable (Redis down): ask again later
            room.retry = min(RETRY_MAX, room.retry * 2 or RETRY_FIRST)
            room.retry_at = time.monotonic() + room.retry
            return
        room.retry = 0.0
        held = sorted(room.held or [], key=lambda f: f["offset"])
        room.held = None
        if reply.get("history_lost"):  # what we neither hold nor can get any more
            first = reply["first_offset"]
            nxt = room.last + 1
            for frame in held:
                if frame["offset"] >= first:
                    break
                room.lost.update(range(nxt, frame["offset"]))
                nxt = max(nxt, frame["offset"] + 1)
            room.lost.update(range(nxt, first))
            room.lost_below = first
        room.releasing = room.overlap  # what was on its way still counts as a repeat
        for frame in held:
            self._message(frame)  # a jump among them asks again
        room.lost_below = 0
        room.releasing = False
        if reply["offset"] > room.last:
            room.last = reply["offset"]  # as wsapp.js: the reply's offset is where it stands

    def _personal(self, frame: dict) -> None:
        msg = frame["msg"]
        if msg in self.personal:
            self.personal_repeats += 1
        else:
            self.personal[msg] = frame["data"]
        self._request("ack", msg, msg=msg)  # again for a repeat: our earlier ack was lost
