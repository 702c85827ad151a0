"""The sans-I/O receiver: frames in, events out; limits, fragmentation and UTF-8."""

import os

import pytest

from wsapp.websocket.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_close_payload,
    build_frame,
    parse_header,
)
from wsapp.websocket.protocol import (
    EV_CLOSE,
    EV_ERROR,
    EV_MESSAGE,
    EV_PING,
    EV_PONG,
    Receiver,
    encode_message,
)

MASK = b"\x11\x22\x33\x44"


def f(opcode, payload=b"", fin=True, rsv1=False):
    return build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)


def feed_all(receiver, data, step=None):
    events = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        events += receiver.feed(data[i:i + step])
    return events


def test_text_binary_empty():
    r = Receiver(1000)
    data = f(OP_TEXT, "héllo".encode()) + f(OP_BINARY, b"\x00\xff") + f(OP_TEXT) + f(OP_BINARY)
    ev = r.feed(data)
    assert ev == [(EV_MESSAGE, "héllo"), (EV_MESSAGE, b"\x00\xff"), (EV_MESSAGE, ""),
                  (EV_MESSAGE, b"")]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 100, 4096])
def test_any_split_gives_the_same_events(step):
    data = (f(OP_TEXT, b"ab", fin=False) + f(OP_PING, b"p") + f(OP_CONT, "ç€".encode())
            + f(OP_BINARY, os.urandom(5000)) + f(OP_PONG, b"q"))
    whole = Receiver(1 << 20).feed(data)
    assert feed_all(Receiver(1 << 20), data, step) == whole
    assert [k for k, _ in whole] == [EV_PING, EV_MESSAGE, EV_MESSAGE, EV_PONG]
    assert whole[1] == (EV_MESSAGE, "abç€")


def feed_through_one_buffer(receiver, data, cuts):
    """Feed `data` cut at `cuts`, each read a view of one reused buffer that the next read
    overwrites (as the server's shared read buffer is): nothing kept may point into it."""
    buffer = bytearray(len(data))
    view = memoryview(buffer)
    events, start = [], 0
    for end in list(cuts) + [len(data)]:
        n = end - start
        buffer[:n] = data[start:end]
        events += receiver.feed(view[:n])
        buffer[:] = b"\xee" * len(buffer)  # the next read lands on top
        start = end
    return events


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 13, 14, 20, 139, 140, 141])
def test_a_frame_begun_in_one_read_finishes_in_a_large_next_read(cut):
    # The carried bytes (a header, or a control frame) are finished from the next read and
    # the rest of that read is parsed in place: same events as one read, at every cut.
    frames = [f(OP_PING, b"p" * 125), f(OP_BINARY, os.urandom(70000)), f(OP_TEXT, b"a" * 200),
              f(OP_TEXT, b"s"), f(OP_CLOSE, build_close_payload(1000, "bye"))]
    data = b"".join(frames)
    whole = Receiver(1 << 20).feed(data)
    for base in (0, len(frames[0]), len(frames[0]) + len(frames[1])):
        cuts = [base + cut] if base + cut < len(data) else []
        got = feed_through_one_buffer(Receiver(1 << 20), data, [base] * bool(base) + cuts)
        assert got == whole
    assert [k for k, _ in whole] == [EV_PING, EV_MESSAGE, EV_MESSAGE, EV_MESSAGE, EV_CLOSE]


def test_large_frame_is_consumed_as_it_arrives():
    r = Receiver(1 << 24)
    payload = os.urandom(1 << 20)
    frame = f(OP_BINARY, payload)
    assert r.feed(frame[:300_000]) == []
    assert r.buffered == 0  # consumed, not held in the input buffer
    assert r.feed(frame[300_000:]) == [(EV_MESSAGE, payload)]


def test_invalid_utf8_fails_inside_the_frame():
    r = Receiver(1 << 20)
    frame = f(OP_TEXT, b"ok" + b"\xff" + b"x" * 100_000)
    ev = r.feed(frame[:100])  # the rest of the frame has not arrived
    assert ev[-1][0] == EV_ERROR and ev[-1][1].code == CLOSE_INVALID_DATA


def test_utf8_split_across_fragments_is_fine_but_truncated_is_not():
    euro = "€".encode()
    r = Receiver(100)
    assert r.feed(f(OP_TEXT, euro[:1], fin=False) + f(OP_CONT, euro[1:])) == [(EV_MESSAGE, "€")]
    ev = Receiver(100).feed(f(OP_TEXT, euro[:2]))
    assert ev[0][0] == EV_ERROR and ev[0][1].code == CLOSE_INVALID_DATA


def test_events_before_an_error_are_kept_and_nothing_after():
    r = Receiver(100)
    ev = r.feed(f(OP_TEXT, b"first") + bytes((0x83, 0x80)) + MASK + f(OP_TEXT, b"later"))
    assert ev[0] == (EV_MESSAGE, "first")
    assert ev[1][0] == EV_ERROR and ev[1][1].code == CLOSE_PROTOCOL_ERROR and len(ev) == 2
    assert r.closed and r.feed(f(OP_TEXT, b"more")) == []


@pytest.mark.parametrize("data,code", [
    (f(OP_CONT, b"x"), CLOSE_PROTOCOL_ERROR),
    (f(OP_TEXT, b"a", fin=False) + f(OP_TEXT, b"b"), CLOSE_PROTOCOL_ERROR),
    (f(OP_TEXT, b"a", rsv1=True), CLOSE_PROTOCOL_ERROR),  # deflate not negotiated
    (f(OP_BINARY, b"x" * 101), CLOSE_MESSAGE_TOO_BIG),
    (f(OP_BINARY, b"x" * 60, fin=False) + f(OP_CONT, b"x" * 41), CLOSE_MESSAGE_TOO_BIG),
    (f(OP_CLOSE, b"\x03"), CLOSE_PROTOCOL_ERROR),
])
def test_violations(data, code):
    ev = Receiver(100).feed(data)
    assert ev[-1][0] == EV_ERROR and ev[-1][1].code == code


def test_fragment_count_limit():
    data = f(OP_BINARY, b"a", fin=False) + f(OP_CONT, b"b", fin=False) + f(OP_CONT, b"c")
    assert Receiver(100, max_fragments=3).feed(data) == [(EV_MESSAGE, b"abc")]
    ev = Receiver(100, max_fragments=2).feed(data)
    assert ev[-1][0] == EV_ERROR and ev[-1][1].code == CLOSE_MESSAGE_TOO_BIG


def test_close_stops_parsing():
    r = Receiver(100)
    ev = r.feed(f(OP_CLOSE, build_close_payload(4001, "done")) + f(OP_TEXT, b"ignored"))
    assert ev == [(EV_CLOSE, (4001, "done"))] and r.closed


def test_control_frame_waits_whole():
    frame = f(OP_PING, b"12345")
    r = Receiver(100)
    assert r.feed(frame[:-2]) == []
    assert r.feed(frame[-2:]) == [(EV_PING, b"12345")]


def test_unmasked_frames_when_mask_not_required():
    r = Receiver(100, mask_required=False)
    assert r.feed(build_frame(OP_TEXT, b"srv")) == [(EV_MESSAGE, "srv")]


def test_encode_message():
    data = encode_message("hé", binary=False)
    head = parse_header(data, 100, require_mask=False)
    assert head.opcode == OP_TEXT and data[head.size:] == "hé".encode()
    data = encode_message(b"\x01" * 70000, binary=True)
    head = parse_header(data, 1 << 20, require_mask=False)
    assert head.opcode == OP_BINARY and head.length == 70000 and head.size == 10


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_fast_path_and_general_path_agree(step):
    # Small whole frames take the fast path; split ones, fragments and control frames the
    # general one: every split must give the same events.
    frames = [f(OP_TEXT, b"hi"), f(OP_BINARY, bytes(range(125))), f(OP_TEXT, b""),
              f(OP_TEXT, "é".encode() * 62), f(OP_BINARY, b"x" * 126),
              f(OP_TEXT, b"a", fin=False), f(OP_PING), f(OP_CONT, b"b"), f(OP_TEXT, b"z")]
    data = b"".join(frames)
    expected = [(EV_MESSAGE, "hi"), (EV_MESSAGE, bytes(range(125))), (EV_MESSAGE, ""),
                (EV_MESSAGE, "é" * 62), (EV_MESSAGE, b"x" * 126), (EV_PING, b""),
                (EV_MESSAGE, "ab"), (EV_MESSAGE, "z")]
    assert feed_all(Receiver(1 << 20), data, step) == expected


def test_fast_path_still_checks_utf8_and_size():
    ev = Receiver(100).feed(f(OP_TEXT, b"\xff\xfe"))
    assert ev[-1][0] == EV_ERROR and ev[-1][1].code == CLOSE_INVALID_DATA
    ev = Receiver(10).feed(f(OP_BINARY, b"x" * 11))
    assert ev[-1][0] == EV_ERROR and ev[-1][1].code == CLOSE_MESSAGE_TOO_BIG


def test_compressed_frame_may_be_a_little_larger_than_the_limit():
    from wsapp.websocket.deflate import DeflateParams, PerMessageDeflate

    limit = 100_000
    data = os.urandom(limit)  # incompressible: deflate output is slightly larger
    sender = PerMessageDeflate(DeflateParams())
    payload = sender.compress(data)
    assert len(payload) > limit
    r = Receiver(limit, deflate=PerMessageDeflate(DeflateParams()))
    assert r.feed(f(OP_BINARY, payload, rsv1=True)) == [(EV_MESSAGE, data)]
    # still refused when it inflates past the limit
    r = Receiver(limit - 1, deflate=PerMessageDeflate(DeflateParams()))
    ev = r.feed(f(OP_BINARY, payload, rsv1=True))
    assert ev[-1][0] == EV_ERROR and ev[-1][1].code == CLOSE_MESSAGE_TOO_BIG
