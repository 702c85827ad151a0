"""Reading and writing gevent sockets straight on their watchers (wsapp.websocket.sockio)."""

import os

import gevent
import gevent.socket
import pytest

from wsapp.websocket.sockio import read, send_all, send_now


@pytest.fixture
def pair():
    """A connected pair of gevent sockets, both closed afterwards (closing twice is fine)."""
    a, b = gevent.socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_read_returns_data_that_arrives_while_waiting(pair):
    a, b = pair
    reader = gevent.spawn(lambda: bytes(read(a)))
    gevent.sleep(0.01)
    assert not reader.ready()
    b.sendall(b"hello")
    assert reader.get(timeout=5) == b"hello"
    b.close()
    assert read(a) == b""  # EOF


def test_read_is_cancelled_when_another_greenlet_closes_the_socket(pair):
    a, b = pair
    reader = gevent.spawn(read, a)
    gevent.sleep(0.01)
    a.close()
    with pytest.raises(OSError):
        reader.get(timeout=5)


def test_read_honours_a_socket_timeout(pair):
    a, b = pair
    a.settimeout(0.05)
    with pytest.raises(TimeoutError):
        read(a)


def test_read_wakes_for_a_gevent_timeout_and_can_wait_again(pair):
    a, b = pair
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        read(a)
    b.sendall(b"x")  # the watcher was stopped: a second wait works
    assert read(a) == b"x"


def _drain(sock, size: int, chunk: int = 65536, pause: float = 0.0) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = sock.recv(chunk)
        if not data:
            break
        got += data
        if pause:
            gevent.sleep(pause)
    return bytes(got)


@pytest.mark.parametrize("tail_size", [0, 1, 70_000, 4 << 20])
def test_send_all_delivers_header_and_tail_in_order_through_a_full_buffer(tail_size, pair):
    a, b = pair
    head, tail = b"\x82\x7f" + os.urandom(8), os.urandom(tail_size)
    # A slow reader: a 4 MiB tail fills the socket buffers many times over.
    reader = gevent.spawn(_drain, b, len(head) + tail_size, 16384, 0.001)
    send_all(a, head, tail)
    assert reader.get(timeout=30) == head + tail


def test_send_all_from_two_greenlets_on_two_sockets_at_once():
    pairs = [gevent.socket.socketpair() for _ in range(2)]
    try:
        blobs = [os.urandom(2 << 20) for _ in pairs]
        readers = [gevent.spawn(_drain, b, len(blob))
                   for (_, b), blob in zip(pairs, blobs, strict=True)]
        writers = [gevent.spawn(send_all, a, blob[:10], blob[10:])
                   for (a, _), blob in zip(pairs, blobs, strict=True)]
        gevent.joinall(writers, timeout=30, raise_error=True)
        assert [r.get(timeout=30) for r in readers] == blobs
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_send_all_to_a_closed_peer_raises(pair):
    a, b = pair
    b.close()
    with pytest.raises(OSError):
        send_all(a, b"x" * 10, b"y" * (1 << 20))


def test_send_now_takes_what_fits_and_never_waits(pair):
    a, b = pair
    assert send_now(a, b"hello") == 5
    sent = [send_now(a, b"z" * 65536) for _ in range(200)]  # far past the socket buffers
    assert sent[-1] == 0 and 0 < sum(sent) < 200 * 65536
    assert _drain(b, 5 + sum(sent)) == b"hello" + b"z" * sum(sent)
    assert send_now(object(), b"x") == 0  # not a gevent socket: nothing is sent
