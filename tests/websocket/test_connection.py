"""The connection object over a gevent socket pair: the server side of a real socket."""

import os

import gevent
import gevent.socket
import pytest
from gevent.exceptions import ConcurrentObjectUseError
from wspeer import MASK, Peer

from wsapp.websocket.connection import ConnectionClosed, WebSocket
from wsapp.websocket.frames import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_close_payload,
    build_frame,
)
from wsapp.websocket.protocol import EV_CLOSE, EV_MESSAGE, EV_PONG


def test_accept_happens_on_first_use(pair):
    ws, peer, accepted = pair
    assert not ws.accepted and not accepted
    ws.send("hi")
    assert ws.accepted and accepted == [True]
    assert peer.next_event() == (EV_MESSAGE, "hi")


def test_receive_text_binary_and_empty(pair):
    ws, peer, _ = pair
    peer.send(OP_TEXT, "ünï".encode())
    peer.send(OP_BINARY, b"\x00\x01")
    peer.send(OP_TEXT, b"")
    assert ws.receive() == "ünï"
    assert ws.receive() == b"\x00\x01"
    assert ws.receive() == ""  # empty is a message, not a close


def test_ping_is_answered_with_same_payload(pair):
    ws, peer, _ = pair
    peer.send(OP_PING, b"abc")
    peer.send(OP_TEXT, b"after")
    assert ws.receive() == "after"
    assert peer.next_event() == (EV_PONG, b"abc")


def test_peer_close_is_answered_and_recorded(pair):
    ws, peer, _ = pair
    peer.send(OP_CLOSE, build_close_payload(4000, "bye"))
    assert ws.receive() is None
    assert (ws.close_code, ws.close_reason) == (4000, "bye")
    assert ws.closed
    assert peer.next_event() == (EV_CLOSE, (4000, ""))
    assert peer.eof()
    with pytest.raises(ConnectionClosed):  # as gevent-websocket: a loop ignoring None ends
        ws.receive()
    with pytest.raises(ConnectionClosed):
        ws.send("late")


@pytest.mark.parametrize("how", ["end", "terminate"])
def test_a_close_by_the_server_is_reported_once_by_the_next_receive(pair, how):
    # The server closes (shutdown, heartbeat, a slow reader cut off) while the route is busy
    # elsewhere: its next receive() still gets the None a loop stops on, then the error.
    ws, peer, _ = pair
    if how == "end":
        gevent.spawn_later(0.05, peer.send, OP_CLOSE, build_close_payload(CLOSE_GOING_AWAY))
        ws.end(CLOSE_GOING_AWAY, "server shutting down")
    else:
        ws.terminate(1011, "ping timeout")
    assert ws.closed
    assert ws.receive() is None
    with pytest.raises(ConnectionClosed):
        ws.receive()


def test_server_close_waits_for_the_peer_reply(pair):
    ws, peer, _ = pair

    def client():
        ev = peer.next_event()
        peer.send(OP_CLOSE, build_close_payload(*ev[1]))
        return ev

    g = gevent.spawn(client)
    ws.close(CLOSE_GOING_AWAY, "shutting down")
    assert g.get(timeout=5) == (EV_CLOSE, (CLOSE_GOING_AWAY, "shutting down"))
    assert ws.close_code == CLOSE_GOING_AWAY  # the peer's echo was read
    assert peer.eof()


def test_close_while_another_greenlet_receives(pair):
    ws, peer, _ = pair
    reader = gevent.spawn(ws.receive)
    gevent.sleep(0.01)

    def client():
        ev = peer.next_event()
        peer.send(OP_CLOSE, build_close_payload(CLOSE_NORMAL, "ok"))
        return ev

    g = gevent.spawn(client)
    ws.close(CLOSE_NORMAL, "done")
    assert reader.get(timeout=5) is None
    assert g.get(timeout=5) == (EV_CLOSE, (CLOSE_NORMAL, "done"))


def test_close_times_out_on_a_silent_peer(pair):
    ws, peer, _ = pair
    with gevent.Timeout(5):
        ws.close(CLOSE_NORMAL, "")
    assert ws.closed
    assert peer.next_event()[0] == EV_CLOSE


def test_protocol_error_closes_with_1002(pair):
    ws, peer, _ = pair
    peer.sock.sendall(build_frame(OP_TEXT, b"x", rsv1=True, mask=MASK))
    assert ws.receive() is None
    kind, (code, reason) = peer.next_event()
    assert kind == EV_CLOSE and code == CLOSE_PROTOCOL_ERROR and "reserved" in reason


def test_concurrent_senders_never_interleave(pair):
    ws, peer, _ = pair
    big = {i: bytes([i]) * 300_000 for i in range(6)}

    def pusher(i):
        for _ in range(5):
            ws.send(big[i])

    received = []

    def reader():
        while len(received) < 30:
            received.append(peer.next_event(timeout=20))

    r = gevent.spawn(reader)
    gevent.joinall([gevent.spawn(pusher, i) for i in range(6)], raise_error=True)
    r.get(timeout=30)
    for kind, payload in received:
        assert kind == EV_MESSAGE and len(payload) == 300_000
        assert payload == bytes([payload[0]]) * 300_000  # one sender's bytes only


def test_send_frame_bytes_sends_prebuilt_bytes(pair):
    ws, peer, _ = pair
    ws.send_frame_bytes(build_frame(OP_TEXT, b"fanout"))
    assert peer.next_event() == (EV_MESSAGE, "fanout")


def test_initial_bytes_are_parsed_first():
    a, b = gevent.socket.socketpair()
    initial = build_frame(OP_TEXT, b"early", mask=MASK)
    ws = WebSocket(a, {}, max_message_size=100, initial=initial)
    b.sendall(build_frame(OP_TEXT, b"later", mask=MASK))
    assert ws.receive() == "early" and ws.receive() == "later"
    a.close()
    b.close()


def test_eof_mid_frame_reads_as_abnormal_close(pair):
    ws, peer, _ = pair
    frame = build_frame(OP_BINARY, os.urandom(1000), mask=MASK)
    peer.sock.sendall(frame[:500])
    peer.sock.close()
    assert ws.receive() is None
    assert ws.close_code == 1006


def test_ping_tracks_outstanding_ping(pair):
    ws, peer, _ = pair
    ws.ping(b"hb")
    assert ws.ping_sent_at > 0
    assert peer.next_event() == (1, b"hb")  # EV_PING
    g = gevent.spawn(ws.receive)
    peer.send(OP_PONG, b"hb")
    gevent.sleep(0.05)
    assert ws.ping_sent_at == 0
    g.kill()


class CountingSocket:
    """Delegates to a gevent socket, counting sendall calls (syscalls of a reply path)."""

    def __init__(self, sock):
        self._inner = sock
        self.sendalls = 0

    def sendall(self, data):
        self.sendalls += 1
        return self._inner.sendall(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def echo_loop(ws, pause=0.0):
    while (msg := ws.receive()) is not None:
        ws.send(msg)
        if pause:
            gevent.sleep(pause)


def test_replies_to_a_pipelined_batch_share_writes():
    a, b = gevent.socket.socketpair()
    counting = CountingSocket(a)
    ws = WebSocket(counting, {}, max_message_size=1 << 20)
    ws._accept = None
    peer = Peer(b)
    b.sendall(b"".join(build_frame(OP_TEXT, f"m{i}".encode(), mask=MASK) for i in range(100)))
    g = gevent.spawn(echo_loop, ws)
    got = [peer.next_event() for _ in range(100)]
    assert got == [(EV_MESSAGE, f"m{i}") for i in range(100)]
    assert counting.sendalls <= 10  # not one syscall per reply
    g.kill()
    a.close()
    b.close()


def test_a_held_reply_goes_out_when_the_route_yields():
    a, b = gevent.socket.socketpair()
    ws = WebSocket(a, {}, max_message_size=1 << 20)
    ws._accept = None
    peer = Peer(b)
    # Two messages in one read: the first reply is held while the second is pending, and the
    # route then sleeps instead of calling receive(): the reply must not wait for it.
    b.sendall(build_frame(OP_TEXT, b"one", mask=MASK) + build_frame(OP_TEXT, b"two", mask=MASK))
    g = gevent.spawn(echo_loop, ws, 5.0)
    assert peer.next_event(timeout=1) == (EV_MESSAGE, "one")
    g.kill()
    a.close()
    b.close()


def test_fanout_frames_never_overtake_held_replies():
    a, b = gevent.socket.socketpair()
    ws = WebSocket(a, {}, max_message_size=1 << 20)
    ws._accept = None
    peer = Peer(b)
    b.sendall(build_frame(OP_TEXT, b"q1", mask=MASK) + build_frame(OP_TEXT, b"q2", mask=MASK))
    assert ws.receive() == "q1"
    ws.send("reply1")  # held: q2 is already parsed
    assert ws.queue_frame(build_frame(OP_TEXT, b"fanout"), 1 << 20)
    assert ws.receive() == "q2"
    ws.send("reply2")
    g = gevent.spawn(ws.receive)  # waits for input: flushes first
    got = [peer.next_event() for _ in range(3)]
    assert got == [(EV_MESSAGE, "reply1"), (EV_MESSAGE, "fanout"), (EV_MESSAGE, "reply2")]
    g.kill()
    a.close()
    b.close()


def test_message_sizes_are_utf8_bytes_per_message(pair):
    ws, peer, _ = pair
    peer.sock.sendall(build_frame(OP_TEXT, "€".encode() * 10, mask=MASK)
                      + build_frame(OP_BINARY, b"abc", mask=MASK))  # one read, two messages
    assert ws.receive() == "€" * 10 and ws.last_message_size == 30
    assert ws.receive() == b"abc" and ws.last_message_size == 3


def test_a_message_before_a_bad_frame_is_answered_then_1002(pair):
    ws, peer, _ = pair
    # One read: a valid message, then a frame with reserved bits (Autobahn 3.2).
    peer.sock.sendall(build_frame(OP_TEXT, b"Hello", mask=MASK)
                      + bytes((0x81 | 0x20, 0x80)) + MASK)
    msg = ws.receive()
    assert msg == "Hello" and not ws.closed
    ws.send(msg)  # the echo must go out
    assert ws.receive() is None
    assert peer.next_event() == (EV_MESSAGE, "Hello")
    kind, (code, _) = peer.next_event()
    assert kind == EV_CLOSE and code == CLOSE_PROTOCOL_ERROR


def test_a_second_concurrent_reader_is_refused(pair):
    ws, peer, _ = pair
    reader = gevent.spawn(ws.receive)
    gevent.sleep(0.01)
    with pytest.raises(ConcurrentObjectUseError):
        ws.receive()
    assert ws.receiving
    peer.send(OP_TEXT, b"first", fin=True)
    assert reader.get(timeout=5) == "first"  # the waiting reader was not disturbed
    assert not ws.receiving
