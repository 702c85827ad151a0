"""Fan-out and presence: exactly-once delivery, nothing for outsiders, join/leave, and 1,000
connections on one room that leave no registry entries behind."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import M_CHANNEL_SUBS, M_CONNECTIONS, M_USERS, raise_nofile

MASSCLIENT = Path(__file__).resolve().parent / "massclient.py"
WS_ROUTE = {"route": "/ws"}  # wsapp_connections is labelled by route


pytestmark = pytest.mark.usefixtures("close_fan_clients")


def _channel(name: str) -> str:
    return f"room:{name}-{time.monotonic_ns()}"


def _messages(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f.get("op") == "message"]


def test_each_subscriber_gets_each_publish_exactly_once(fan):
    ch, elsewhere = _channel("twenty"), _channel("elsewhere")
    # 20 connections in the room: 17 users with one tab, "tabby" with two, "twice" with
    # one connection that subscribed two times.
    inside = [fan.connect(f"user{i}") for i in range(17)]
    inside += [fan.connect("tabby"), fan.connect("tabby"), fan.connect("twice")]
    for c in inside:
        c.ok("subscribe", channel=ch)
    inside[-1].ok("subscribe", channel=ch)
    # Outsiders: another room, no subscription, a sys: listener, anonymous.
    other_room = [fan.connect(f"out{i}") for i in range(3)]
    for c in other_room:
        c.ok("subscribe", channel=elsewhere)
    sys_listener = fan.connect()
    sys_listener.ok("subscribe", channel="sys:news")
    outside = other_room + [fan.connect("idle"), sys_listener]

    publisher = fan.connect("publisher")
    sent = [publisher.ok("publish", channel=ch, data={"n": n}) for n in range(3)]

    for c in inside:
        got = []
        while len(got) < 3:
            got.append(c.wait_for(lambda f: f.get("op") == "message"))
        got += _messages(c.sync())  # a duplicate would be queued before the pong
        assert [(m["msg"], m["offset"], m["data"]) for m in got] == \
            [(s["msg"], s["offset"], {"n": n}) for n, s in enumerate(sent)], c.welcome
        assert all(m["from"] == "publisher" and m["channel"] == ch for m in got)
    # Every subscriber has its copies, so the fan-out is over: anything meant for an
    # outsider was queued before the ping we send now.
    for c in outside:
        assert _messages(c.sync()) == [], c.welcome
    assert _messages(publisher.sync()) == []  # not subscribed: nothing echoed back


def test_two_tabs_both_receive(fan):
    ch = _channel("tabs")
    tab1, tab2 = fan.connect("alice"), fan.connect("alice")
    tab1.ok("subscribe", channel=ch)
    tab2.ok("subscribe", channel=ch)
    pub = fan.connect("bob").ok("publish", channel=ch, data="to both tabs")
    for tab in (tab1, tab2):
        assert tab.wait_for(lambda f: f.get("op") == "message")["msg"] == pub["msg"]
        assert _messages(tab.sync()) == []


def _presence(client, ch) -> tuple[list[str], int, int]:
    reply = client.ok("presence", channel=ch)
    assert len(reply["members"]) == len(set(reply["members"])), reply
    return sorted(reply["members"]), reply["count"], reply["connections"]


def _is(op: str, user: str):
    return lambda f: f.get("op") == op and f.get("user") == user


def test_presence_join_leave_with_tabs_and_abrupt_disconnect(fan):
    ch = _channel("presence")
    bob = fan.connect("bob")
    bob.ok("subscribe", channel=ch)
    assert _presence(bob, ch) == (["bob"], 1, 1)

    alice1 = fan.connect("alice")
    alice1.ok("subscribe", channel=ch)
    join = bob.wait_for(_is("join", "alice"))
    assert join == {"op": "join", "channel": ch, "user": "alice"}

    # A second tab: no second join. Carol joining afterwards is the witness: a wrong join
    # for alice's second tab would reach bob before carol's.
    alice2 = fan.connect("alice")
    alice2.ok("subscribe", channel=ch)
    carol = fan.connect("carol")
    carol.ok("subscribe", channel=ch)
    bob.wait_for(_is("join", "carol"))
    assert [f for f in bob.events if f.get("op") in ("join", "leave")] == []
    assert _presence(bob, ch) == (["alice", "bob", "carol"], 3, 4)

    # One tab leaves: alice is still there, so no leave (dave is the witness this time).
    alice1.ok("unsubscribe", channel=ch)
    dave = fan.connect("dave")
    dave.ok("subscribe", channel=ch)
    bob.wait_for(_is("join", "dave"))
    assert [f for f in bob.events if f.get("op") in ("join", "leave")] == []
    assert _presence(bob, ch) == (["alice", "bob", "carol", "dave"], 4, 4)

    # The last tab drops without a close frame: leave, and presence forgets her.
    alice2.abort()
    leave = bob.wait_for(_is("leave", "alice"))
    assert leave == {"op": "leave", "channel": ch, "user": "alice"}
    assert _presence(bob, ch) == (["bob", "carol", "dave"], 3, 3)

    # A clean close and an unsubscribe each give a leave too; others see it, bob included.
    carol.close()
    bob.wait_for(_is("leave", "carol"))
    dave.ok("unsubscribe", channel=ch)
    bob.wait_for(_is("leave", "dave"))
    assert _presence(bob, ch) == (["bob"], 1, 1)
    assert [f for f in bob.sync() if f.get("op") in ("join", "leave")] == []


def test_join_and_leave_reach_only_that_channel(fan):
    ch, other = _channel("scoped"), _channel("scoped-other")
    watcher, stranger = fan.connect("watcher"), fan.connect("stranger")
    watcher.ok("subscribe", channel=ch)
    stranger.ok("subscribe", channel=other)
    eve = fan.connect("eve")
    eve.ok("subscribe", channel=ch)
    watcher.wait_for(_is("join", "eve"))
    eve.abort()
    watcher.wait_for(_is("leave", "eve"))
    assert [f for f in stranger.sync() if f.get("op") in ("join", "leave")] == []


class MassClient:
    """massclient.py in a subprocess; one JSON line per command."""

    def __init__(self, port: int, count: int, channel: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(MASSCLIENT), "--port", str(port), "--count", str(count),
             "--channel", channel],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=raise_nofile)

    def read(self, timeout: float = 90.0) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise AssertionError(f"massclient said nothing; stderr:\n{self.proc.stderr.read()}")
        return json.loads(line)

    def command(self, name: str, timeout: float = 90.0) -> dict:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def stop(self) -> None:
        """Ask it to exit; kill it (by PID: only the helper this test started) if it hangs."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.proc.wait(10)


def test_thousand_connections_one_publish_then_nothing_left(fan):
    ch, count = _channel("mass"), 1000
    base = fan.metrics()
    assert base.get(M_CHANNEL_SUBS, channel=ch) is None
    mass = MassClient(fan.port, count, ch)
    try:
        ready = mass.read()
        assert ready["event"] == "subscribed" and ready["ok"] == count, ready

        m = fan.metrics()
        assert m.get(M_CHANNEL_SUBS, channel=ch) == count
        assert m.get(M_CONNECTIONS, **WS_ROUTE) >= count
        assert m.get(M_USERS) >= 50  # massclient spreads the connections over 50 users
        witness = fan.connect("witness")
        members, users, conns = _presence(witness, ch)
        assert (users, conns) == (50, count) and members == sorted(f"mass{i}" for i in range(50))

        result = mass.command("publish")
        assert result["reply"]["op"] == "ok", result
        assert result["everyone"] and result["counts"] == {"1": count}, result
        assert result["strangers"] == 0, result

        closed = mass.command("close")
        assert closed["event"] == "closed", closed
    finally:
        mass.stop()

    # Every registry entry goes: the channel's gauge, the connections, the users.
    baseline = base.get(M_CONNECTIONS, **WS_ROUTE)
    m = fan.wait_metric(lambda m: m.get(M_CHANNEL_SUBS, channel=ch) is None
                        and m.get(M_CONNECTIONS, **WS_ROUTE) <= baseline + 1, timeout=20)
    assert m.get(M_CHANNEL_SUBS, channel=ch) is None, m.labelled(M_CHANNEL_SUBS, "channel")
    assert m.get(M_CONNECTIONS, **WS_ROUTE) == baseline + 1  # + the witness
    assert _presence(witness, ch) == ([], 0, 0)
    witness.ok("subscribe", channel=ch)
    assert _presence(witness, ch) == (["witness"], 1, 1)
    # Nothing of the mass users is left online, and the server still answers.
    assert m.get(M_USERS) <= base.get(M_USERS) + 1
    assert fan.http("GET", "/healthz")[0] == 200

