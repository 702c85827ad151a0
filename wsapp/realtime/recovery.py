"""Recovery: a client, or this whole process, catching up on what it missed.

Three ways to miss messages, one discipline. While history is being sent, live messages for
the same channel are *held* behind it and released afterwards minus those the history already
carried, so nobody sees a gap, a duplicate, or an offset out of order at the seam.

Bounded, for a client that stops reading: history goes out through the connection's backlog
(`WebSocket.put`, the fan-out's `max_backlog`, waiting at most `send_timeout` for room), and
a client's hold keeps at most `max_replay_hold` bytes. Past either, the connection is closed
with 1008 (a slow consumer); the client reconnects with `since` and loses nothing. Measured
before: eight non-reading replays of one user took the process from 50 to 572 MiB, and
stayed open.

- `subscribe_replay` — a client subscribing with `since` (it reconnected): history after
  `since`, then the live messages held for it;
- `deliver_pending` — a user connecting: every personal message not yet acked;
- `catch_up` — this process missed messages on a channel (its broker was cut off a while:
  the broker says `resumed`, or a delivered offset skips some): every subscriber here gets
  the missing ones from the store, in order, before anything newer — except what it already
  has: a connection that came meanwhile said so with its `since` (even if Redis refused its
  replay then), and a replay says what it sent (`Client.positions`). If history no longer
  reaches back that far, clients see the offset jump and resubscribe with `since`, and are
  told `history_lost`.

With the Redis store, history reads pass a barrier on the bus (engines/redis/backend.py), so
everything stored before the read has reached the hold by the time it returns.

A mixin of the Hub (hub.py), which owns the maps and fan-out it uses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent

from wsapp.realtime.client import Client, Hold
from wsapp.realtime.engines.base import Store
from wsapp.realtime.exceptions import RequestError
from wsapp.realtime.messages import envelope_offset, message
from wsapp.realtime.pipeline import Pipeline, now_ms
from wsapp.websocket.frames import OP_TEXT, build_frame

if TYPE_CHECKING:
    from wsapp.realtime.options import RealtimeOptions

log = logging.getLogger(__name__)

# History is read for a replay this many messages at a time: a client that stops reading
# pins one page (plus its backlog and hold), not the channel's whole history.
REPLAY_PAGE = 50


class Recovery:
    """Replay, pending messages and catch-up, for the Hub."""

    # What the hub provides.
    settings: RealtimeOptions
    _replays: int
    _holds: dict[str, list[str]]
    _delivered: dict[str, int]
    history_of: Callable[[str], tuple[int, float] | None]

    @property
    def store(self) -> Store:
        raise NotImplementedError

    @property
    def pipeline(self) -> Pipeline:
        raise NotImplementedError

    def subscribe(self, client: Client, channel: str) -> bool:
        raise NotImplementedError

    def last_offset(self, channel: str) -> int:
        raise NotImplementedError

    def _dispatch(self, channel: str, text: str, again: int | None = None) -> None:
        raise NotImplementedError

    def _cut_slow(self, client: Client, why: str = "slow consumer") -> None:
        raise NotImplementedError

    def _replay_send(self, client: Client, text: str) -> None:
        """Send one replayed message through the connection's bounded backlog; a client that
        does not make room within send_timeout is cut off (ConnectionClosed here)."""
        ws = client.ws
        if not ws.put(build_frame(OP_TEXT, text.encode("utf-8")), self.settings.max_backlog):
            if not ws.closed:
                self._cut_slow(client, "slow consumer (replay)")
            raise ws.closed_error()

    def _history_size(self, channel: str) -> int:
        """How much history `channel` keeps (all of it may need replaying)."""
        keep = self.history_of(channel)
        return max(1, keep[0]) if keep is not None else self.settings.history_size

    # -- a client -------------------------------------------------------------------------

    def subscribe_replay(self, client: Client, channel: str, since: int | None) -> dict[str, Any]:
        """Subscribe; with `since`, first send every stored message after that offset.

        Live messages arriving meanwhile are held and released after the history, minus any
        the history already carried, so the client sees each offset once, in order.
        """
        if since is None:
            self.subscribe(client, channel)
            last = self.last_offset(channel)
            self._delivered.setdefault(channel, last)  # where a catch-up would start
            return {"offset": last}
        # It has everything up to `since`, even if the replay fails (the store is down): a
        # catch-up of this process never sends it those again.
        client.has_up_to(channel, since)
        held = client.replaying[channel] = Hold()
        self._replays += 1
        try:
            self.subscribe(client, channel)
            size = self._history_size(channel)
            history = self.store.history(channel, since, min(size, REPLAY_PAGE))
            last_offset = history["last_offset"]
            last_sent = since
            replayed = 0
            while True:  # at most `size` messages, a page at a time
                messages = history["messages"]
                full = len(messages) == min(size - replayed, REPLAY_PAGE)
                replayed += len(messages)
                for m in messages:
                    self._replay_send(client, message(channel, m["offset"], m["msg"],
                                                      m["data"], m["from"], m["ts"]))
                    last_sent = m["offset"]
                if not full or not messages or replayed >= size:
                    break
                del messages, history["messages"]  # sent: let the page go before the next
                page = self.store.history(channel, last_sent, min(size - replayed, REPLAY_PAGE))
                history["messages"] = page["messages"]
                last_offset = max(last_offset, page["last_offset"])
            while held:  # no yield between the last check and leaving replay mode
                text = held.take()
                offset = envelope_offset(channel, text)
                if offset is None:  # a live, unstored message: never in history
                    self._replay_send(client, text)
                elif offset > last_sent:
                    self._replay_send(client, text)
                    last_sent = offset
            client.has_up_to(channel, last_sent)  # before live delivery reaches it again
        finally:
            del client.replaying[channel]
            self._replays -= 1
        self._delivered.setdefault(channel, max(last_sent, last_offset))
        return {"offset": max(last_sent, last_offset), "replayed": replayed,
                "first_offset": history["first_offset"],
                "history_lost": history["first_offset"] > since + 1}

    def deliver_pending(self, client: Client) -> int:
        """On connect: subscribe the user's own channel and send every unacked message."""
        user = client.user
        if user is None:
            return 0
        channel = f"user:{user}"
        held = client.replaying[channel] = Hold()
        self._replays += 1
        sent_ids: set[str] = set()
        try:
            self.subscribe(client, channel)
            pending = self.store.pending(user, now_ms())
            if pending:  # every unacked message up to there: a catch-up need not send them
                client.has_up_to(channel, max(m["offset"] for m in pending))
            for m in pending:
                self._replay_send(client, message(channel, m["offset"], m["msg"], m["data"],
                                                  None, m["ts"]))
                sent_ids.add(m["msg"])
            while held:
                text = held.take()
                if json.loads(text)["msg"] not in sent_ids:
                    self._replay_send(client, text)
        finally:
            del client.replaying[channel]
            self._replays -= 1
        if sent_ids:
            self.pipeline.submit_nowait(("delivered", sorted(sent_ids), now_ms()))
        return len(sent_ids)

    # -- this process ---------------------------------------------------------------------

    def catch_up(self, channel: str, first: str | None = None) -> None:
        """Bring this process's subscribers of `channel` up to date from the store, from
        the last offset delivered here; live messages (`first`, and any arriving meanwhile)
        wait in line behind. Runs in its own greenlet: the caller may be the bus reader,
        which the store's history read waits on."""
        held = self._holds.get(channel)
        if held is not None:  # already catching up: join the line
            if first is not None:
                held.append(first)
            return
        self._holds[channel] = [first] if first is not None else []
        gevent.spawn(self._catch_up, channel)

    def _catch_up(self, channel: str) -> None:
        since = sent = self._delivered.get(channel, 0)
        try:
            history = self.store.history(channel, since, self._history_size(channel))
            for m in history["messages"]:
                if m["offset"] > sent:
                    self._dispatch(channel, message(channel, m["offset"], m["msg"], m["data"],
                                                    m["from"], m["ts"]), again=m["offset"])
                    sent = m["offset"]
            if history["first_offset"] > since + 1:
                log.info("catch-up of %s: offsets %d..%d are no longer kept; its clients will "
                         "be told history_lost when they resubscribe", channel, since + 1,
                         history["first_offset"] - 1)
        except RequestError as exc:  # the store is unreachable again: clients resubscribe
            log.warning("catch-up of %s failed: %s", channel, exc.reason)
        except Exception:
            log.exception("catch-up of %s failed", channel)
        finally:
            held = self._holds.pop(channel, [])
            for text in held:  # no yield: nothing can overtake the held messages
                offset = envelope_offset(channel, text)
                if offset is None or offset > sent:
                    self._dispatch(channel, text, again=offset)
                    sent = offset if offset is not None else sent
            if channel in self._delivered:
                self._delivered[channel] = sent
        if sent > since:
            log.info("caught up %s: offsets %d..%d", channel, since + 1, sent)
