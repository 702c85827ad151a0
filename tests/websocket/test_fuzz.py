"""Property tests of the sans-I/O receiver (protocol.py, frames.py): any bytes, cut anywhere,
give events or one error — never an exception, never more after the error; valid frames give
back exactly the messages sent, however the bytes are cut."""

from __future__ import annotations

import os
import struct
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from wsapp.websocket.deflate import DeflateParams, PerMessageDeflate
from wsapp.websocket.exceptions import ProtocolError
from wsapp.websocket.frames import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, build_frame
from wsapp.websocket.protocol import EV_ERROR, EV_MESSAGE, EV_PING, Receiver

LIMIT = 1 << 16
BOUNDED = settings(max_examples=300, deadline=None)


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` in pieces of the given sizes, cycling (the rest in one piece at the end)."""
    out, at = [], 0
    for size in sizes * (len(data) // max(1, sum(sizes)) + 1):
        if at >= len(data):
            break
        out.append(data[at:at + size])
        at += size
    if at < len(data):
        out.append(data[at:])
    return out


def feed_all(receiver: Receiver, pieces: list[bytes]) -> list[tuple]:
    events: list[tuple] = []
    for piece in pieces:
        events += receiver.feed(piece)
    return events


@BOUNDED
@given(st.binary(max_size=2048), st.lists(st.integers(1, 97), min_size=1, max_size=8),
       st.booleans())
def test_any_bytes_give_events_or_one_error_never_an_exception(data, sizes, deflate):
    params = PerMessageDeflate(DeflateParams()) if deflate else None
    receiver = Receiver(LIMIT, 8, deflate=params)
    events = feed_all(receiver, cut(data, sizes))
    kinds = [kind for kind, _ in events]
    if EV_ERROR in kinds:
        assert kinds.index(EV_ERROR) == len(kinds) - 1  # nothing parsed after an error
        assert isinstance(events[-1][1], ProtocolError) and events[-1][1].code in (
            1002, 1007, 1009)
        assert receiver.feed(b"\x81\x80" + os.urandom(4)) == []  # and nothing after it
    for kind, value in events:
        if kind == EV_MESSAGE:
            assert isinstance(value, (str, bytes)) and len(value) <= LIMIT


messages = st.one_of(st.text(max_size=300), st.binary(max_size=300))


@BOUNDED
@given(st.lists(st.tuples(messages, st.integers(1, 4)), min_size=1, max_size=6),
       st.lists(st.integers(1, 200), min_size=1, max_size=6), st.booleans())
def test_valid_frames_give_back_the_messages_however_the_bytes_are_cut(sent, sizes, pings):
    wire = b""
    for message, parts in sent:
        payload = message.encode("utf-8") if isinstance(message, str) else message
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        step = max(1, -(-len(payload) // parts))
        chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        for i, chunk in enumerate(chunks):
            wire += build_frame(opcode if i == 0 else OP_CONT, chunk, fin=i == len(chunks) - 1,
                                mask=os.urandom(4))
            if pings:  # control frames may come between fragments
                wire += build_frame(OP_PING, b"p", mask=os.urandom(4))
    events = feed_all(Receiver(LIMIT, 64), cut(wire, sizes))
    assert [v for k, v in events if k == EV_MESSAGE] == [m for m, _ in sent]
    assert all(k in (EV_MESSAGE, EV_PING) for k, _ in events)


@BOUNDED
@given(st.lists(st.text(max_size=2000), min_size=1, max_size=5),
       st.lists(st.integers(1, 300), min_size=1, max_size=5))
def test_compressed_messages_inflate_to_what_was_sent(sent, sizes):
    params = DeflateParams()
    compressor = zlib.compressobj(wbits=-15)
    wire = b""
    for text in sent:
        data = compressor.compress(text.encode("utf-8")) + compressor.flush(zlib.Z_SYNC_FLUSH)
        wire += build_frame(OP_TEXT, data[:-4], rsv1=True, mask=os.urandom(4))
    events = feed_all(Receiver(LIMIT, 8, deflate=PerMessageDeflate(params)), cut(wire, sizes))
    assert [v for k, v in events if k == EV_MESSAGE] == sent


@BOUNDED
@given(st.integers(LIMIT + 1, LIMIT * 64), st.booleans())
def test_an_oversized_message_is_refused_before_its_payload(size, text):
    """1009 from the header alone: the payload never has to arrive."""
    header = struct.pack("!BBQ", 0x81 if text else 0x82, 0x80 | 127, size) + b"abcd"
    [(kind, error)] = Receiver(LIMIT).feed(header)
    assert kind == EV_ERROR and error.code == 1009
