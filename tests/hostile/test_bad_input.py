"""Hostile and broken clients over raw sockets: each gets the right answer (HTTP 400, a cut
at the handshake timeout, or a close frame with the right code), none blocks other clients,
and nothing leaks: every logged upgrade has its close line and the server's open sockets
return to their baseline."""

from __future__ import annotations

import struct
import time
import zlib

import pytest
from wsclient import RawClient, connect, deflate_bomb, read_response, request

from wsapp.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    build_frame,
    build_header,
)

HANDSHAKE_TIMEOUT = 3.0
LIMIT = 256 * 1024
MASK = b"\x01\x02\x03\x04"


@pytest.fixture(scope="module")
def srv(start_module_server):
    """One server for the module, with a short handshake timeout and a 256 KiB limit."""
    server = start_module_server("--handshake-timeout", str(HANDSHAKE_TIMEOUT),
                                 "--close-timeout", "1", "--max-message-size", str(LIMIT),
                                 "--ping-interval", "0")
    server.record_baseline()
    return server


@pytest.fixture(autouse=True)
def fresh_log(srv):
    """Each test answers for the tracebacks logged while it ran, not for earlier ones."""
    srv.mark()


def healthy(srv) -> None:
    """Another client's echo works and nothing leaked."""
    srv.assert_echo()
    srv.assert_clean()


def closed_with(client: RawClient, code: int) -> str:
    """Assert the server's close frame carries `code`, answer it, and see TCP end."""
    got, reason = client.expect_close()
    assert got == code, (got, reason)
    try:
        client.send_close(code)
    except OSError:
        pass  # the server may already have shut the connection
    assert client.wait_eof(), "the server closes TCP after a failed connection"
    return reason


# -- before the handshake ---------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [
    b"HELLO\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 binary junk\r\n\r\n",
    b"GET /ws/echo\x00 HTTP/9.9 what\r\n\r\n",
], ids=["word", "tls-hello", "nul-in-request-line"])
def test_garbage_with_crlf_gets_400(srv, garbage):
    with connect(srv.port) as sock:
        sock.sendall(garbage)
        resp = read_response(sock)
        assert resp.status == 400
    healthy(srv)


@pytest.mark.parametrize("sent", [
    b"",
    b"garbage without any line end " * 10,
    b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
], ids=["silence", "garbage-no-crlf", "headers-never-end"])
def test_incomplete_request_is_cut_at_the_handshake_timeout(srv, sent):
    started = time.monotonic()
    with connect(srv.port) as sock:
        if sent:
            sock.sendall(sent)
        # While this client stalls, another is served, and the stall is still going on after.
        srv.assert_echo()
        sock.settimeout(0.05)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        client = RawClient(sock)
        cut = client.wait_eof(HANDSHAKE_TIMEOUT + 10)
        elapsed = time.monotonic() - started
    assert cut, "the server must drop a client that never finishes its request"
    assert elapsed >= HANDSHAKE_TIMEOUT * 0.9
    srv.wait_for_log(rf"handshake timeout: {client.peer} sent no complete request")
    healthy(srv)


def test_many_stalled_clients_do_not_block_others(srv):
    stalled = [connect(srv.port) for _ in range(20)]
    stalled_ws = [RawClient.open(srv.port) for _ in range(5)]
    try:
        for client in stalled_ws:  # half a 16 KiB frame each: their reads are blocked
            client.send_raw(build_header(OP_BINARY, 16384, mask=MASK) + b"x" * 8192)
        for sock in stalled[:10]:
            sock.sendall(b"GET /ws/echo HTTP/1.1\r\n")
        for _ in range(3):
            srv.assert_echo()
    finally:
        for sock in stalled:
            sock.close()
        for client in stalled_ws:
            client.close()
    healthy(srv)


@pytest.mark.parametrize("cut", [b"GET /ws/ec", b"Sec-WebSocket-Key: MDEy"],
                         ids=["in-request-line", "in-headers"])
def test_abrupt_close_mid_handshake(srv, cut):
    data = request(srv.port)
    with connect(srv.port) as sock:
        peer = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendall(data[:data.index(cut) + len(cut)])
    if b"Key" in cut:  # the upgrade headers were in: the aborted handshake is logged
        srv.wait_for_log(rf"handshake refused {peer} /ws/echo")
    healthy(srv)


# -- frame headers ------------------------------------------------------------------------------

def test_length_2_63_minus_1_gets_1009(srv):
    with RawClient.open(srv.port) as client:
        client.send_raw(struct.pack("!BBQ", 0x82, 0x80 | 127, (1 << 63) - 1) + MASK)
        closed_with(client, 1009)
    healthy(srv)


def test_length_with_top_bit_set_gets_1002(srv):
    with RawClient.open(srv.port) as client:
        client.send_raw(struct.pack("!BBQ", 0x82, 0x80 | 127, (1 << 64) - 1) + MASK)
        closed_with(client, 1002)
    healthy(srv)


def test_oversize_frame_is_refused_before_its_payload(srv):
    with RawClient.open(srv.port) as client:
        # Only the header of a 100 MB frame: the 1009 must come without a byte of payload.
        client.send_raw(build_header(OP_BINARY, 100_000_000, mask=MASK))
        code, reason = client.expect_close(timeout=5)
        assert code == 1009, reason
        srv.assert_echo()
        assert client.wait_eof(10), "the server drops the connection without the payload"
    srv.wait_for_log(r"closing /ws/echo: 1009 frame of 100000000 bytes")
    healthy(srv)


def test_fragmented_message_over_the_limit_gets_1009(srv):
    with RawClient.open(srv.port) as client:
        piece = b"a" * (LIMIT // 2)
        client.send_frame(OP_BINARY, piece, fin=False)
        client.send_frame(OP_CONT, piece, fin=False)
        client.send_raw(build_header(OP_CONT, 1, fin=True, mask=MASK))
        closed_with(client, 1009)
    healthy(srv)


def test_compression_bomb_gets_1009_without_memory_growth(srv):
    bomb = deflate_bomb(64 << 20)  # 64 MiB of zeros in about 64 KB
    assert len(bomb) < LIMIT, "the frame itself must be under the limit"
    with RawClient.open(srv.port, headers={
            "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}) as client:
        # A first message in and out, so that everything is set up before measuring.
        client.send_frame(OP_BINARY, b"warm-up" * 20)
        reply = client.recv_frame()
        payload = reply.payload
        if reply.rsv1:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert payload == b"warm-up" * 20
        hwm, rss = srv.status_kb("VmHWM"), srv.status_kb("VmRSS")
        client.send_frame(OP_BINARY, bomb, rsv1=True)
        closed_with(client, 1009)
    assert srv.status_kb("VmHWM") - hwm < 8 * 1024, "peak memory grew by more than 8 MiB"
    assert srv.status_kb("VmRSS") - rss < 8 * 1024
    healthy(srv)


# -- protocol violations -----------------------------------------------------------------------

def _frame_with_b0(b0: int, payload: bytes = b"hi") -> bytes:
    frame = bytearray(build_frame(OP_TEXT, payload, mask=MASK))
    frame[0] = b0
    return bytes(frame)


PROTOCOL_ERRORS = {
    "rsv1-without-deflate": _frame_with_b0(0x80 | 0x40 | OP_TEXT),
    "rsv2": _frame_with_b0(0x80 | 0x20 | OP_TEXT),
    "rsv3": _frame_with_b0(0x80 | 0x10 | OP_BINARY),
    "unmasked": build_frame(OP_TEXT, b"hello"),
    "unknown-opcode": _frame_with_b0(0x80 | 0x3),
    "unknown-control-opcode": _frame_with_b0(0x80 | 0xB),
    "fragmented-ping": build_frame(OP_PING, b"p", fin=False, mask=MASK),
    "long-ping": build_frame(OP_PING, b"p" * 126, mask=MASK),
    "continuation-without-message": build_frame(OP_CONT, b"x", mask=MASK),
    "new-message-inside-fragmented": build_frame(OP_TEXT, b"a", fin=False, mask=MASK)
    + build_frame(OP_BINARY, b"b", mask=MASK),
    "non-minimal-length": struct.pack("!BBH", 0x82, 0x80 | 126, 5) + MASK + b"12345",
    "close-code-1005": build_frame(OP_CLOSE, struct.pack("!H", 1005), mask=MASK),
    "close-one-byte": build_frame(OP_CLOSE, b"\x03", mask=MASK),
}


@pytest.mark.parametrize("data", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_violation_gets_1002(srv, data):
    with RawClient.open(srv.port) as client:
        client.send_raw(data)
        closed_with(client, 1002)
    healthy(srv)


INVALID_UTF8 = {
    "single-frame": build_frame(OP_TEXT, b"\xff\xfe", mask=MASK),
    "surrogate": build_frame(OP_TEXT, b"\xed\xa0\x80", mask=MASK),
    "truncated-at-end": build_frame(OP_TEXT, b"abc\xe2\x82", mask=MASK),
    # Fails fast: the message is never finished, the bad byte alone must be enough.
    "first-fragment": build_frame(OP_TEXT, b"ok \xc0\xaf", fin=False, mask=MASK),
    "split-across-fragments": build_frame(OP_TEXT, b"\xe2", fin=False, mask=MASK)
    + build_frame(OP_CONT, b"\x28\xa1", mask=MASK),
    "close-reason": build_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff", mask=MASK),
}


@pytest.mark.parametrize("data", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_gets_1007(srv, data):
    with RawClient.open(srv.port) as client:
        client.send_raw(data)
        closed_with(client, 1007)
    healthy(srv)


def test_valid_utf8_split_across_fragments_is_echoed(srv):
    text = "h\u00e9llo \u20ac \U0001f600".encode()
    with RawClient.open(srv.port) as client:
        for i in range(len(text)):  # one byte per frame: every split point of every sequence
            client.send_frame(OP_TEXT if i == 0 else OP_CONT, text[i:i + 1],
                              fin=i == len(text) - 1)
        frame = client.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_TEXT, text)
        client.send_close(1000)
        assert client.expect_close() == (1000, "")
    healthy(srv)


# -- abrupt ends --------------------------------------------------------------------------------

def test_abrupt_close_mid_frame(srv):
    with RawClient.open(srv.port) as client:
        client.send_frame(OP_TEXT, b"first")
        assert client.recv_frame().payload == b"first"
        client.send_raw(build_header(OP_TEXT, 1000, mask=MASK) + b"0123456789")
        peer = client.peer
    srv.wait_for_log(rf"close {peer} /ws/echo \S+ sent=None received=1006")
    healthy(srv)


def test_abrupt_close_right_after_upgrade(srv):
    with RawClient.open(srv.port) as client:
        peer = client.peer
    srv.wait_for_log(rf"close {peer} /ws/echo \S+ sent=None received=1006")
    healthy(srv)
