"""The Presence contract (engines/base.py), on local presence (one process) and Redis
presence (two processes): join on a user's first connection anywhere, leave on the last,
members and online users everywhere, one reporter per figure set."""

from __future__ import annotations

from collections import defaultdict

import pytest

from realtime.engines.conftest import wait_for


class Process:
    """One process's connections (the LocalView a hub gives) and the events it is told."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, int]] = defaultdict(dict)
        self.conns: dict[str, int] = defaultdict(int)
        self.events: list[tuple[str, str, str, str]] = []

    # LocalView
    def local_members(self, channel):
        return self.members.get(channel, {})

    def local_connections(self, channel):
        return self.conns.get(channel, 0)

    def local_channels(self):
        return [c for c, n in self.conns.items() if n]

    def local_online(self, user):
        return bool(self.members.get(f"user:{user}", {}).get(user))

    def local_users(self):
        return len({u for c, m in self.members.items() if c.startswith("user:") for u in m})

    def connection_count(self):
        return sum(self.conns.values())

    # PresenceHandler
    def presence_event(self, op, channel, user, skip):
        self.events.append((op, channel, user, skip))

    def change(self, presence, channel, user, client, delta):
        """What the hub does: update the local maps, then tell the engine."""
        self.conns[channel] += delta
        if user is not None:
            counts = self.members[channel]
            counts[user] = counts.get(user, 0) + delta
            if counts[user] <= 0:
                del counts[user]
        presence.changed(channel, user, client, delta)


@pytest.fixture
def cluster(engines):
    """[(presence, process), ...]: two processes for Redis, one for local presence."""
    pairs = []
    for presence in engines.processes("presence", 2):
        process = Process()
        presence.start(process, process)
        pairs.append((presence, process))
    return pairs


def last(pairs):
    return pairs[-1]  # the "other" process when there are two, the only one otherwise


def test_join_on_the_first_connection_anywhere_and_leave_on_the_last(cluster):
    (p0, proc0), (p1, proc1) = cluster[0], last(cluster)
    proc0.change(p0, "room:a", "ann", "c1", +1)
    for _, proc in cluster:  # everyone in the channel hears it; the joiner is named to skip
        wait_for(lambda pr=proc: ("join", "room:a", "ann", "c1") in pr.events, what="join")
    proc1.change(p1, "room:a", "ann", "c2", +1)  # ann's second tab (elsewhere): no event
    # (processes report concurrently: let the second tab land before the first one leaves)
    wait_for(lambda: p0.members("room:a")["connections"] == 2, what="two connections")
    proc0.change(p0, "room:a", "ann", "c1", -1)
    wait_for(lambda: p0.members("room:a")["connections"] == 1, what="one connection left")
    assert p1.members("room:a") == {"members": ["ann"], "count": 1, "connections": 1}
    proc1.change(p1, "room:a", "ann", "c2", -1)  # her last one: leave
    for _, proc in cluster:
        wait_for(lambda pr=proc: ("leave", "room:a", "ann", "") in pr.events, what="leave")
        joins = [e for e in proc.events if e[0] == "join"]
        assert joins == [("join", "room:a", "ann", "c1")]
    assert p0.members("room:a") == {"members": [], "count": 0, "connections": 0}


def test_members_count_each_user_once_and_every_connection(cluster):
    (p0, proc0), (p1, proc1) = cluster[0], last(cluster)
    proc0.change(p0, "room:m", "bob", "c1", +1)
    proc1.change(p1, "room:m", "ann", "c2", +1)
    proc1.change(p1, "room:m", "ann", "c3", +1)
    proc0.change(p0, "room:m", None, "c4", +1)  # anonymous: a connection, not a member
    expected = {"members": ["ann", "bob"], "count": 2, "connections": 4}
    for presence, _ in cluster:
        assert wait_for(lambda p=presence: p.members("room:m") == expected and expected,
                        what="members") == expected


def test_online_users_and_channels_everywhere(cluster):
    (p0, proc0), (p1, proc1) = cluster[0], last(cluster)
    proc0.change(p0, "user:ann", "ann", "c1", +1)
    proc1.change(p1, "user:bob", "bob", "c2", +1)
    proc1.change(p1, "room:x", "bob", "c2", +1)
    for presence, _ in cluster:
        wait_for(lambda p=presence: p.is_online("bob") and p.is_online("ann"), what="online")
        assert not presence.is_online("carl")
        wait_for(lambda p=presence: p.online_users() == 2, what="2 users online")
        wait_for(lambda p=presence: p.channel_count() == 3, what="3 channels")


def test_one_process_reports_each_figure_set_with_every_share(cluster):
    reports = [presence.gather("figures", {"n": i + 1}, lease=5.0)
               for i, (presence, _) in enumerate(cluster)]
    reporters = [r for r in reports if r is not None]
    assert len(reporters) == 1  # whoever claimed first reports; the others stay quiet
    again = [presence.gather("figures", {"n": i + 1}, lease=5.0)
             for i, (presence, _) in enumerate(cluster)]
    [report] = [r for r in again if r is not None]
    assert sorted(share["n"] for share in report) == list(range(1, len(cluster) + 1))
    assert [r is None for r in again] == [r is None for r in reports]  # the same reporter


def test_health_is_up(cluster):
    assert all(presence.health()["state"] == "up" for presence, _ in cluster)
