"""Fairness and bounds in the WebSocket layer, in frames: the message budget counted from
frame headers (dropped messages are never unmasked, inflated or decoded; too many drops end
in 1008), the turn yield, the bounded-wait backlog and the send timeout."""

import contextlib
import os
import socket
import time
import zlib

import gevent
import gevent.socket
import pytest
from test_protocol import MASK, f
from wspeer import Peer

from wsapp.websocket.connection import ConnectionClosed, WebSocket
from wsapp.websocket.deflate import DeflateParams, PerMessageDeflate
from wsapp.websocket.fairness import (
    DEFAULT_PACE,
    DROP_WINDOW,
    MessageBudget,
    Pace,
    TokenBucket,
    pace_of,
)
from wsapp.websocket.frames import (
    CLOSE_POLICY_VIOLATION,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    build_close_payload,
    build_frame,
)
from wsapp.websocket.protocol import EV_DROPPED, EV_ERROR, EV_MESSAGE, Receiver
from wsapp.websocket.tracker import ConnectionTracker


def receiver(messages=1000.0, nbytes=1e9, max_dropped=0, deflate=None, size=1 << 20):
    r = Receiver(size, deflate=deflate)
    r.budget = MessageBudget(messages, nbytes, max_dropped)
    return r


def deflated(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]


class Spy:
    """Counts what the receiver asks of the unmasker, to prove a payload was skipped."""

    def __init__(self, monkeypatch):
        import wsapp.websocket.protocol as protocol

        self.bytes = 0
        real = protocol.apply_mask

        def counting(data, mask, offset=0):
            self.bytes += len(data)
            return real(data, mask, offset)

        monkeypatch.setattr(protocol, "apply_mask", counting)


# -- the budget, from headers ---------------------------------------------------------------


def test_messages_over_the_message_rate_are_dropped_with_their_tail():
    r = receiver(messages=2)  # a burst of 4
    events = r.feed(b"".join(f(OP_TEXT, b'{"id":%d}' % i) for i in range(6)))
    assert events[:4] == [(EV_MESSAGE, f'{{"id":{i}}}') for i in range(4)]
    assert events[4:] == [(EV_DROPPED, b'{"id":4}'), (EV_DROPPED, b'{"id":5}')]


def test_a_large_message_over_the_byte_rate_is_skipped_unread(monkeypatch):
    spy = Spy(monkeypatch)
    r = receiver(nbytes=100_000)  # burst 200 kB
    big = b"x" * 150_000 + b'"id":7}'
    assert r.feed(f(OP_TEXT, big)) == [(EV_MESSAGE, big.decode())]
    unmasked_for_first = spy.bytes
    assert r.feed(f(OP_TEXT, big)) == [(EV_DROPPED, big[-512:])]
    # Only the last 512 bytes of the dropped one were unmasked (for its request id).
    assert spy.bytes - unmasked_for_first == 512


def test_a_dropped_message_is_not_checked_as_utf8():
    r = receiver(messages=0.5)  # a burst of one message
    events = r.feed(f(OP_TEXT, b"ok") + f(OP_TEXT, b"\xff\xfe not utf-8") + f(OP_TEXT, b"x"))
    assert [kind for kind, _ in events] == [EV_MESSAGE, EV_DROPPED, EV_DROPPED]


def test_a_fragmented_message_is_charged_per_frame_and_dropped_whole():
    r = receiver(nbytes=50)  # burst 100 bytes
    data = f(OP_TEXT, b"a" * 60, fin=False) + f(OP_CONT, b"b" * 60) + f(OP_TEXT, b"c")
    # The second fragment passes the budget: the whole message goes (the tail kept is what
    # was skipped); the next message is judged on its own.
    assert r.feed(data) == [(EV_DROPPED, b"b" * 60), (EV_MESSAGE, "c")]


def test_byte_at_a_time_input_drops_the_same_way():
    r = receiver(messages=0.5)
    data = f(OP_TEXT, b"first") + f(OP_TEXT, b'{"op":"x","id":9}')
    events = []
    for i in range(len(data)):
        events += r.feed(data[i:i + 1])
    assert events == [(EV_MESSAGE, "first"), (EV_DROPPED, b'{"op":"x","id":9}')]


def test_too_many_drops_end_the_input_with_1008():
    r = receiver(messages=0.5, max_dropped=3)
    events = r.feed(b"".join(f(OP_TEXT, b"m") for _ in range(10)))
    kinds = [kind for kind, _ in events]
    assert kinds == [EV_MESSAGE, EV_DROPPED, EV_DROPPED, EV_DROPPED, EV_DROPPED, EV_ERROR]
    assert events[-1][1].code == CLOSE_POLICY_VIOLATION
    assert r.feed(f(OP_TEXT, b"after")) == []


def test_drops_are_forgiven_over_the_window():
    budget = MessageBudget(1, 1, max_dropped=2)
    assert budget.dropped() and budget.dropped() and not budget.dropped()
    budget.drops.stamp -= DROP_WINDOW  # as if the window had passed
    assert budget.dropped()


def test_a_compressed_message_is_charged_what_it_inflates_to():
    deflate = PerMessageDeflate(DeflateParams(client_no_context_takeover=True))
    r = receiver(nbytes=100_000, deflate=deflate)  # burst 200 kB
    bomb = deflated(b"0," * 400_000)  # ~1 KB on the wire, 800 kB inflated
    events = r.feed(f(OP_TEXT, bomb, rsv1=True) + f(OP_TEXT, b'{"id":1}'))
    assert [kind for kind, _ in events] == [EV_DROPPED, EV_MESSAGE]
    assert events[1] == (EV_MESSAGE, '{"id":1}')


def test_without_context_takeover_a_dropped_compressed_message_is_not_inflated(monkeypatch):
    deflate = PerMessageDeflate(DeflateParams(client_no_context_takeover=True))
    r = receiver(messages=0.5, deflate=deflate)
    calls = []
    real = PerMessageDeflate.decompress
    monkeypatch.setattr(PerMessageDeflate, "decompress",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    payload = deflated(b"hello " * 100)
    events = r.feed(f(OP_TEXT, payload, rsv1=True) * 3)
    assert [kind for kind, _ in events] == [EV_MESSAGE, EV_DROPPED, EV_DROPPED]
    assert len(calls) == 1  # only the admitted one


def test_with_context_takeover_later_messages_still_inflate():
    deflate = PerMessageDeflate(DeflateParams())
    r = receiver(messages=0.5, deflate=deflate)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # one stream: messages refer back

    def message(text: bytes) -> bytes:
        return f(OP_TEXT, (comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4], rsv1=True)

    events = r.feed(message(b"repeat me " * 50) + message(b"repeat me " * 50))
    assert [kind for kind, _ in events] == [EV_MESSAGE, EV_DROPPED]
    r.budget = None
    assert r.feed(message(b"repeat me " * 50)) == [(EV_MESSAGE, "repeat me " * 50)]


def test_no_budget_no_change():
    r = Receiver(1 << 20)
    assert r.feed(f(OP_TEXT, b"x") * 3) == [(EV_MESSAGE, "x")] * 3


def test_burst_then_refill():
    bucket = TokenBucket(rate=100, burst=10)
    assert all(bucket.take() for _ in range(10))
    assert not bucket.take()
    time.sleep(0.05)  # ~5 tokens back
    assert bucket.take()


def test_sizes_and_unlimited():
    bucket = TokenBucket(rate=1000)  # burst 2000
    assert bucket.take(1500) and not bucket.take(1000)
    unlimited = TokenBucket(rate=0)
    assert all(unlimited.take(10**9) for _ in range(3))


def test_token_bucket_rate_zero_is_unlimited():
    assert all(TokenBucket(0).take(10**9) for _ in range(3))


# -- the connection: budget, turns, backlog, send timeout -----------------------------------


def make_pair(pace=DEFAULT_PACE, size=1 << 20):
    a, b = gevent.socket.socketpair()
    ws = WebSocket(a, {"PATH_INFO": "/t"}, max_message_size=size, close_timeout=0.5,
                   pace=pace)
    return ws, Peer(b), (a, b)


def test_dropped_messages_reach_on_drop_not_receive():
    ws, peer, socks = make_pair()
    drops = []
    ws.limit_rate(0.5, 1e9, on_drop=drops.append)  # a burst of one message
    for i in range(3):
        peer.send(OP_TEXT, b'{"id":%d}' % i)
    peer.send(OP_CLOSE, build_close_payload(1000))
    assert ws.receive() == '{"id":0}'
    assert ws.receive() is None
    assert drops == [b'{"id":1}', b'{"id":2}']
    for s in socks:
        s.close()


def test_a_flooding_connection_lets_others_run():
    """A peer whose socket always has data: receive() still yields every turn."""
    ws, peer, socks = make_pair(Pace(turn_bytes=4096, turn_messages=4))
    ticks = []

    def ticker():
        for _ in range(1000):
            ticks.append(1)
            gevent.sleep(0)

    peer.sock.sendall(b"".join(build_frame(OP_TEXT, b"m" * 100, mask=MASK) for _ in range(400)))
    other = gevent.spawn(ticker)
    got = 0
    for _ in range(400):  # all already in the socket: without turns, no yield at all
        assert ws.receive() == "m" * 100
        got += 1
        if got == 40:
            assert len(ticks) >= 5, "the other greenlet did not run during the flood"
    other.kill()
    for s in socks:
        s.close()


def test_pace_of_reads_settings_and_defaults():
    class S:
        turn_bytes = 1000
        send_timeout = 0.0

    p = pace_of(S())
    assert p == Pace(1000, Pace().turn_messages, 0.0)
    assert p is pace_of(S())  # shared, not one per connection
    assert p.write_timeout is None and p.message_cost == max(1, 1000 // Pace().turn_messages)


def fill_socket(ws, peer):
    """Small buffers both ways, so that a peer that reads nothing fills them quickly."""
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


def test_a_write_the_peer_never_takes_times_out():
    ws, peer, socks = make_pair(Pace(send_timeout=0.3))
    fill_socket(ws, peer)
    with gevent.Timeout(5, AssertionError("the send timeout did not fire")):
        with pytest.raises(ConnectionClosed):
            for _ in range(1000):
                ws.send("x" * 65536)
    assert ws.closed
    for s in socks:
        s.close()


def test_put_waits_for_room_then_gives_up():
    ws, peer, socks = make_pair(Pace(send_timeout=5))
    fill_socket(ws, peer)
    frame = build_frame(OP_TEXT, b"y" * 30000)
    queued = 0
    for _ in range(100):
        if not ws.put(frame, 100_000, timeout=0.2):
            break
        queued += 1
    assert 0 < queued < 100
    assert ws.backlog <= 100_000  # bounded: never more than max_backlog waits
    # The peer reads: room appears, and put() gets its frame in.
    reader = gevent.spawn(lambda: [peer.sock.recv(1 << 16) for _ in range(400)])
    assert ws.put(frame, 100_000, timeout=3)
    reader.kill()
    for s in socks:
        s.close()


def test_the_tracker_cuts_a_pinged_peer_that_does_not_read():
    ws, peer, socks = make_pair(Pace(send_timeout=0))  # only the heartbeat can cut it
    fill_socket(ws, peer)
    ws.send("open")
    def write():
        with contextlib.suppress(ConnectionClosed):
            for _ in range(1000):
                ws.send("z" * 65536)

    writer = gevent.spawn(write)
    gevent.sleep(0.1)
    assert ws.stalled and not ws.receiving
    tracker = ConnectionTracker(ping_interval=0.1, ping_timeout=0.1)
    tracker.add(ws)
    ws.last_seen -= 1
    tracker.sweep(ws.last_seen + 1)  # pings (in a greenlet that waits behind the writer)
    gevent.sleep(0.05)
    assert ws.ping_sent_at
    tracker.sweep(ws.ping_sent_at + 0.5)
    with gevent.Timeout(3):
        writer.join()
    assert ws.closed
    for s in socks:
        s.close()


@pytest.mark.parametrize("seed", range(3))
def test_random_splits_give_the_same_events(seed):
    rnd = __import__("random").Random(seed)
    data = b"".join(f(OP_TEXT, os.urandom(4).hex().encode() * rnd.randint(1, 200))
                    for _ in range(30))
    whole = receiver(messages=5)
    expected = whole.feed(data)
    pieces = receiver(messages=5)
    got, pos = [], 0
    while pos < len(data):
        step = rnd.randint(1, 300)
        got += pieces.feed(data[pos:pos + step])
        pos += step
    assert [k for k, _ in got] == [k for k, _ in expected]


def test_inflating_more_than_a_turn_pauses_the_feed():
    """1 KB on the wire can be 1 MiB inflated: a feed stops after a turn's worth, keeping
    the rest for feed(b"")."""
    r = Receiver(1 << 20, deflate=PerMessageDeflate(DeflateParams()))
    r.work_limit = 100_000
    bomb = f(OP_TEXT, deflated(b"0," * 200_000), rsv1=True)  # ~1 KB -> 400 kB
    events = r.feed(bomb * 3 + f(OP_TEXT, b"plain"))
    assert len(events) == 1 and r.paused
    for _ in range(3):
        events += r.feed(b"")
    assert [kind for kind, _ in events] == [EV_MESSAGE] * 4 and not r.paused
    assert events[-1] == (EV_MESSAGE, "plain")


def test_a_paused_connection_yields_then_goes_on():
    ws, peer, socks = make_pair(Pace(turn_bytes=100_000))
    ws._deflate = ws._receiver._deflate = PerMessageDeflate(DeflateParams())
    ticks = []
    other = gevent.spawn(lambda: [ticks.append(1) or gevent.sleep(0) for _ in range(100)])
    bomb = deflated(b"0," * 200_000)
    peer.sock.sendall(b"".join(build_frame(OP_TEXT, bomb, rsv1=True, mask=MASK)
                               for _ in range(4)))
    for _ in range(4):
        assert len(ws.receive()) == 400_000
    assert len(ticks) >= 3, "no turn for the others between inflated messages"
    other.kill()
    for s in socks:
        s.close()
