"""The pure frame codec, tested with bytes alone."""

import os
import struct

import pytest

from wsapp.websocket.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NO_STATUS,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    ProtocolError,
    _apply_mask_py,
    apply_mask,
    build_close_payload,
    build_frame,
    build_header,
    is_valid_close_code,
    parse_close_payload,
    parse_header,
)

MASK = b"\x01\x02\x03\x04"


def naive_mask(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 9, 125, 126, 65535, 65536, 100_001])
def test_apply_mask_matches_definition(n):
    data = os.urandom(n)
    assert apply_mask(data, MASK) == naive_mask(data, MASK)
    assert _apply_mask_py(data, MASK) == naive_mask(data, MASK) if n else True


@pytest.mark.parametrize("offset", range(8))
def test_apply_mask_at_offset_continues_the_mask(offset):
    data = os.urandom(50)
    assert apply_mask(data[offset:], MASK, offset) == naive_mask(data, MASK)[offset:]


def test_rfc_example_masked_hello():
    # RFC 6455 §5.7: a single-frame masked text message "Hello".
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    head = parse_header(frame, 1000)
    assert head.fin and head.opcode == OP_TEXT and head.length == 5 and head.size == 6
    assert apply_mask(frame[head.size:], head.mask) == b"Hello"
    assert build_frame(OP_TEXT, b"Hello", mask=bytes.fromhex("37fa213d")) == frame


@pytest.mark.parametrize("length,size", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_length_encodings_round_trip(length, size):
    head = build_header(OP_BINARY, length, mask=MASK)
    parsed = parse_header(head, 1 << 20)
    assert parsed.length == length and parsed.size == size + 4 and parsed.mask == MASK


def test_incomplete_headers_need_more_bytes():
    frame = build_frame(OP_BINARY, b"x" * 70000, mask=MASK)
    for cut in range(0, 14):
        assert parse_header(frame[:cut], 1 << 20) is None
    assert parse_header(frame[:14], 1 << 20) is not None


def test_oversize_is_refused_from_the_header_alone():
    head = build_header(OP_BINARY, 100 * 1024 * 1024, mask=MASK)
    with pytest.raises(ProtocolError) as exc:
        parse_header(head[:10], 1 << 20)  # not even the mask has arrived
    assert exc.value.code == CLOSE_MESSAGE_TOO_BIG


def test_length_with_top_bit_is_a_protocol_error():
    head = bytes((0x82, 0xFF)) + struct.pack("!Q", (1 << 63) + 5) + MASK
    with pytest.raises(ProtocolError) as exc:
        parse_header(head, 1 << 62)
    assert exc.value.code == CLOSE_PROTOCOL_ERROR


def test_two_pow_63_minus_one_is_too_big():
    head = bytes((0x82, 0xFF)) + struct.pack("!Q", (1 << 63) - 1) + MASK
    with pytest.raises(ProtocolError) as exc:
        parse_header(head, 1 << 20)
    assert exc.value.code == CLOSE_MESSAGE_TOO_BIG


@pytest.mark.parametrize("frame,why", [
    (bytes((0x81 | 0x40, 0x80)) + MASK, "reserved"),
    (bytes((0x81 | 0x20, 0x80)) + MASK, "reserved"),
    (bytes((0x83, 0x80)) + MASK, "unknown opcode"),
    (bytes((0x8B, 0x80)) + MASK, "unknown opcode"),
    (bytes((0x09, 0x80)) + MASK, "fragmented control"),
    (bytes((0x89, 0x80 | 126, 0, 126)) + MASK, "control frame longer"),
    (bytes((0x81, 0x05)) + b"hello", "not masked"),
    (bytes((0x82, 0x80 | 126, 0, 5)) + MASK, "non-minimal"),
    (bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 300) + MASK, "non-minimal"),
])
def test_header_violations(frame, why):
    with pytest.raises(ProtocolError) as exc:
        parse_header(frame, 1 << 20)
    assert exc.value.code == CLOSE_PROTOCOL_ERROR
    assert why in exc.value.reason


def test_rsv1_allowed_only_when_negotiated():
    frame = bytes((0xC1, 0x80)) + MASK
    assert parse_header(frame, 100, rsv1_allowed=True).rsv1
    with pytest.raises(ProtocolError):
        parse_header(frame, 100)
    with pytest.raises(ProtocolError):  # never on control frames
        parse_header(bytes((0xC9, 0x80)) + MASK, 100, rsv1_allowed=True)


def test_server_frames_parse_without_mask():
    frame = build_frame(OP_PING, b"hi")
    head = parse_header(frame, 100, require_mask=False)
    assert head.mask is None and head.opcode == OP_PING and frame[head.size:] == b"hi"


def test_close_payloads():
    assert parse_close_payload(build_close_payload(4000, "bye")) == (4000, "bye")
    assert parse_close_payload(b"") == (CLOSE_NO_STATUS, "")
    assert build_close_payload(None) == b""
    long_reason = "é" * 100  # 200 bytes: cut to fit 123 on a character boundary
    payload = build_close_payload(1000, long_reason)
    assert len(payload) <= 125
    code, reason = parse_close_payload(payload)
    assert code == 1000 and long_reason.startswith(reason) and len(reason) == 61


@pytest.mark.parametrize("payload,code", [
    (b"\x03", CLOSE_PROTOCOL_ERROR),
    (struct.pack("!H", 999), CLOSE_PROTOCOL_ERROR),
    (struct.pack("!H", 1005), CLOSE_PROTOCOL_ERROR),
    (struct.pack("!H", 1006), CLOSE_PROTOCOL_ERROR),
    (struct.pack("!H", 2000), CLOSE_PROTOCOL_ERROR),
    (struct.pack("!H", 5000), CLOSE_PROTOCOL_ERROR),
    (struct.pack("!H", 1000) + b"\xff\xfe", CLOSE_INVALID_DATA),
])
def test_bad_close_payloads(payload, code):
    with pytest.raises(ProtocolError) as exc:
        parse_close_payload(payload)
    assert exc.value.code == code


def test_valid_close_codes():
    assert all(is_valid_close_code(c) for c in (1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999))
    assert not any(is_valid_close_code(c) for c in (0, 999, 1004, 1005, 1006, 1016, 2999, 5000))


def test_close_frame_build():
    frame = build_frame(OP_CLOSE, build_close_payload(1001, "going"))
    assert frame == b"\x88\x07\x03\xe9going"
