"""Fairness and bounded resources against a real serve.py (issue 12, findings 1 and 2).

1. One anonymous /ws connection that floods — 1 MiB JSON frames, deflate frames of ~1 KB
   that inflate to 1 MiB, or small requests far over the rate limit — must not freeze the
   process: another client's `ping` op and GET /healthz are answered within 1 s meanwhile,
   in demo and in production mode (the rate limit comes before any token), and the flooder
   is closed with 1008 once it has gone on over its budget.
2. Connections that subscribe with `since` to a long history and never read must neither
   pin memory without bound nor stay open: server RSS grows by less than a fixed figure and
   every one of them is closed within a bounded time.

The attack clients are bench/attacks.py's, the ones bench/hostile.py measures with.
"""

from __future__ import annotations

import importlib.util
import sys
import time

import pytest
from serverproc import ROOT

_spec = importlib.util.spec_from_file_location("bench_attacks", ROOT / "bench" / "attacks.py")
assert _spec is not None and _spec.loader is not None
attacks = importlib.util.module_from_spec(_spec)
sys.modules["bench_attacks"] = attacks
_spec.loader.exec_module(attacks)

API_KEY = "fairness-key"
SECRET = "s" * 32
MODES = {"demo": (), "production": ("--api-key", API_KEY, "--secret", SECRET)}
BOUND = 1.0  # seconds: the generous bound for a well-behaved client's round trip


@pytest.fixture(scope="module", params=list(MODES))
def srv(request, start_module_server):
    """serve.py with default limits, in demo and in production mode."""
    return start_module_server(*MODES[request.param], "--log-level", "INFO")


def _answered_meanwhile(port: int, rounds: int = 8) -> dict[str, float]:
    """The slowest round trip of each kind over `rounds` (a fresh probe connection)."""
    probe = attacks.Probe(port, timeout=30.0)
    try:
        got = probe.sample(rounds, pause=0.05)
    finally:
        probe.close()
    return {kind: max(times) for kind, times in got.items()}


@pytest.mark.parametrize("kind", ["plain", "compressed", "oversize"])
def test_a_flood_leaves_other_clients_answered(srv, kind):
    """While one client floods (reconnecting whenever it is closed), another's ping op and
    /healthz answer within 1 s."""
    with attacks.FloodLoop(srv.port, kind, seconds=20.0) as flood:
        time.sleep(0.5)  # the flood is on
        slowest = _answered_meanwhile(srv.port)
        assert slowest["ws_ping"] < BOUND, slowest
        assert slowest["healthz"] < BOUND, slowest
        assert flood.connections > 0


@pytest.mark.parametrize("kind,code", [("plain", 1008), ("compressed", 1008), ("rate", 1008),
                                       ("oversize", 1009)])
def test_a_flooder_over_its_limits_is_closed(srv, kind, code):
    """Frames over the rate budget are dropped unread; one that keeps on is closed (1008);
    one that inflates past max_message_size at once (1009)."""
    with attacks.Flooder(srv.port, kind, seconds=20.0) as flood:
        assert flood.ended.wait(15), f"{kind} flood still open after 15 s"
        assert flood.close_code == code, flood.close_code
    srv.assert_echo()
    assert "Traceback" not in srv.log()


def test_over_rate_requests_do_not_starve_others(srv):
    """Small requests far over the rate limit: the others are still answered in time."""
    with attacks.Flooder(srv.port, "rate", seconds=20.0):
        slowest = _answered_meanwhile(srv.port)
    assert max(slowest.values()) < BOUND, slowest


# -- finding 2: replays to clients that do not read ---------------------------------------

STALLED = 8
HISTORY = 400  # messages of ~60 KB: ~24 MB of history each stalled replay would pin whole
RSS_GROWTH_MIB = 80  # measured: +211 MiB before (whole histories pinned), +35 MiB after


@pytest.fixture
def replay_srv(start_server):
    """Short heartbeats and send timeout, so a stuck connection is judged quickly."""
    return start_server("--ping-interval", "1", "--ping-timeout", "1", "--send-timeout", "2",
                        "--log-level", "INFO")


def _server_sockets_back_to(srv, baseline: int, timeout: float) -> int:
    """The server's open sockets once they are back to `baseline`, or after `timeout`.
    Judged from the server's side: a client that read to find out would unstall it."""
    deadline = time.monotonic() + timeout
    count = srv.socket_count()
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
        count = srv.socket_count()
    return count


def test_stalled_replays_are_bounded_and_cut(replay_srv):
    """Eight connections of one user replay ~6 MB of history each and never read, while
    live messages keep coming: RSS stays bounded and all are closed within 10 s."""
    port = replay_srv.port
    channel = "room:stalled"
    attacks.fill_history(port, channel, HISTORY, 60_000)
    status, minted = attacks.http_json(port, "POST", "/api/tokens", {"user": "stuck"})
    assert status == 200, minted
    time.sleep(0.5)
    before = replay_srv.status_kb("VmRSS")
    baseline = replay_srv.socket_count()

    with attacks.LivePublisher(port, channel):  # the replay holds fill all along
        stalled = attacks.StalledReplays(port, minted["token"], channel, STALLED)
        try:
            peak = before
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                peak = max(peak, replay_srv.status_kb("VmRSS"))
                time.sleep(0.1)
        except BaseException:
            stalled.close()
            raise
    left = _server_sockets_back_to(replay_srv, baseline, 3.0)
    peak = max(peak, replay_srv.status_kb("VmRSS"))
    stalled.close()
    growth_mib = (peak - before) / 1024
    print(f"stalled replays: RSS {before / 1024:.0f} -> {peak / 1024:.0f} MiB, "
          f"{max(0, left - baseline)} left open")
    assert left <= baseline, f"{left - baseline} of {STALLED} stalled replays open after 10 s"
    assert growth_mib < RSS_GROWTH_MIB, f"RSS grew {growth_mib:.0f} MiB"
    replay_srv.assert_echo()
    assert "Traceback" not in replay_srv.log()
