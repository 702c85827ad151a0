"""Sans-I/O WebSocket message layer: bytes in, events out; messages in, bytes out.

Theory of operation: `Receiver.feed(data)` appends to a buffer and turns every complete
frame into events, enforcing fragmentation rules, limits, UTF-8 and permessage-deflate.
Data frames are consumed as they arrive (a 16 MiB frame never waits whole in the buffer),
and text is decoded incrementally as its bytes arrive, so invalid UTF-8 fails fast, inside
the frame, and each byte is validated exactly once. Any violation raises ProtocolError with
the close code to send; after a close frame, input is ignored.

With a `budget` (wsapp.websocket.fairness.MessageBudget) a data message is admitted when its
first frame header arrives; one over the budget is *dropped*: its payload is skipped, never
unmasked, decoded or (without context takeover) inflated, and it ends as one EV_DROPPED
event. A compressed message is charged what it inflates to, as it inflates, and dropped the
moment it passes the budget. Too many drops end the input with a 1008 ProtocolError.

Inflating is the one step whose cost the wire does not show (1 KB can become 1 MiB): once a
feed() has inflated more than `work_limit` bytes it stops, sets `paused` and keeps the rest
of its input; `feed(b"")` goes on from there. So the connection can let others run between
two pieces of one read.

`encode_message` builds the bytes of an outgoing data message (compressed when the
connection negotiated deflate and the message is worth it).
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, AnyStr

from wsapp.websocket.exceptions import ProtocolError
from wsapp.websocket.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Header,
    apply_mask,
    build_header,
    parse_close_payload,
    parse_header,
    unmask,
)

if TYPE_CHECKING:
    from wsapp.websocket.deflate import PerMessageDeflate
    from wsapp.websocket.fairness import MessageBudget

_DROPPED = b"\x00dropped"  # (by identity) a message the budget refused part way

# Events are (kind, value) tuples: cheap to make on the per-message hot path.
EV_MESSAGE = 0  # value: str (text) or bytes (binary)
EV_PING = 1  # value: payload bytes
EV_PONG = 2  # value: payload bytes
EV_CLOSE = 3  # value: (code, reason)
EV_ERROR = 4  # value: ProtocolError; always the last event, nothing is parsed after it
EV_DROPPED = 5  # value: up to MessageBudget.TAIL last payload bytes (b"" if not known)
Event = tuple[int, str | bytes | tuple[int, str] | ProtocolError]

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


# The most a read can leave unparsed: a header, or a control frame's header and payload
# (data payloads are taken as they arrive).
_MAX_CARRY = 14 + 125
_TAIL = 512  # payload bytes kept of a dropped message (MessageBudget.TAIL): a small one whole


class Receiver:
    """Turns the bytes a client sends into events; raises ProtocolError on any violation."""

    __slots__ = ("_buf", "_max_size", "_max_fragments", "_deflate", "_mask_required",
                 "_head", "_done", "_message_op", "_fragments", "_size", "_parts",
                 "_decoder", "_compressed", "closed", "budget", "_drop", "_tail", "work",
                 "work_limit", "paused")

    def __init__(self, max_message_size: int, max_fragments: int = 4096, *,
                 deflate: PerMessageDeflate | None = None, mask_required: bool = True) -> None:
        self._buf = b""  # the start of a frame whose header is not all here yet
        self._max_size = max_message_size
        self._max_fragments = max_fragments
        self._deflate = deflate
        self._mask_required = mask_required
        self._head: Header | None = None  # header of the data frame whose payload is arriving
        self._done = 0  # payload bytes of that frame already consumed
        self._message_op = 0  # OP_TEXT/OP_BINARY while a fragmented message is open
        self._fragments = 0
        self._size = 0  # bytes of the open message so far (after decompression)
        self._parts: list | None = None  # the pieces so far of a message still arriving
        self._decoder: codecs.IncrementalDecoder | None = None
        self._compressed = False
        self.closed = False  # a close frame was received; nothing after it is parsed
        self.budget: MessageBudget | None = None  # messages/bytes per second, from headers
        self._drop = False  # the open message is over the budget: its payload is skipped
        self._tail = b""  # the last payload bytes of a dropped message (for its request id)
        self.work = 0  # bytes inflated by the current feed()
        self.work_limit = 1 << 62  # ... past which it pauses (the connection sets its turn)
        self.paused = False  # the last feed() stopped early: feed(b"") resumes it

    @property
    def buffered(self) -> int:
        """Bytes held but not yet turned into events (for tests and memory accounting)."""
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[Event]:
        """Consume `data`; return the events it completes, in order.

        A violation ends the list with (EV_ERROR, ProtocolError) so that the messages that
        arrived before it in the same read are still delivered.
        """
        if self.closed:
            return []
        events: list[Event] = []
        self.work = 0
        self.paused = False
        try:
            self._feed(data, events)
        except ProtocolError as exc:
            self.closed = True
            self._buf = b""
            events.append((EV_ERROR, exc))
        return events

    def _feed(self, data: bytes | memoryview, events: list[Event]) -> None:
        carry = self._buf
        if carry:
            # A header (or a control frame) began in the last read. Finish it from the fewest
            # new bytes, then parse the rest of a large read in place, not copied behind it.
            self._buf = b""
            if len(data) > _MAX_CARRY:
                joined = carry + bytes(data[:_MAX_CARRY])
                pos = self._parse(joined, events)
                if self.closed:
                    return
                if pos >= len(carry):
                    data = data[pos - len(carry):]
                else:  # unreachable (what is carried fits in _MAX_CARRY), but stay exact
                    data = joined[pos:] + bytes(data[_MAX_CARRY:])
            else:
                data = carry + bytes(data)
        pos = self._parse(data, events)
        if pos < len(data) and not self.closed:
            self._buf = bytes(data[pos:])

    def _parse(self, view: bytes | memoryview, events: list[Event]) -> int:
        """Parse frames from `view`, appending events; return how many bytes were used."""
        pos = 0
        end = len(view)
        fast = self._mask_required and self._head is None
        rate = self.budget
        while pos < end:
            if fast and not self._message_op and end - pos >= 6:
                # Fast path for the common frame: a whole, masked, unfragmented, uncompressed
                # text or binary message under 126 bytes, already entirely in the buffer.
                b0 = view[pos]
                b1 = view[pos + 1]
                if (b0 == 0x81 or b0 == 0x82) and 0x80 <= b1 <= 0xFD:
                    stop = pos + 6 + b1 - 0x80
                    if stop <= end and stop - pos - 6 <= self._max_size:
                        if rate is not None and not rate.admit(stop - pos - 6):
                            self._dropped(events, view[pos + 6:stop], view[pos + 2:pos + 6])
                            pos = stop
                            continue
                        payload = unmask(view[pos + 6:stop], view[pos + 2:pos + 6]) \
                            if stop > pos + 6 else b""
                        if b0 == 0x81:
                            try:
                                events.append((EV_MESSAGE, payload.decode("utf-8")))
                            except UnicodeDecodeError:
                                raise ProtocolError(CLOSE_INVALID_DATA,
                                                    "text is not valid UTF-8") from None
                        else:
                            events.append((EV_MESSAGE, payload))
                        pos = stop
                        continue
            head = self._head
            if head is None:
                budget = self._max_size - self._size
                wire_budget = budget
                if self._deflate is not None:
                    # Deflate can expand incompressible data by a little; the inflater holds
                    # the decompressed size to `budget` anyway.
                    wire_budget = budget + (budget >> 6) + 1024
                    if self._message_op and self._compressed:  # continuation: RSV1 clear
                        budget = wire_budget
                head = parse_header(
                    view[pos:pos + 14] if pos else view,
                    budget,
                    require_mask=self._mask_required,
                    rsv1_allowed=self._deflate is not None,
                    max_compressed=wire_budget,
                )
                if head is None:
                    break
                pos += head.size
                if head.opcode >= OP_CLOSE:
                    # Control frames (<= 125 bytes) are handled whole, between fragments.
                    if end - pos < head.length:
                        pos -= head.size
                        break
                    raw = view[pos:pos + head.length]
                    pos += head.length
                    if head.mask is not None:
                        payload = apply_mask(raw, head.mask)
                    else:
                        payload = bytes(raw)
                    event = self._control(head.opcode, payload)
                    events.append(event)
                    if self.closed:
                        pos = end
                        break
                    continue
                self._start_data_frame(head)
                self._head = head
                self._done = 0
                fast = False
            # Payload of a data frame: take what is here, now.
            take = min(head.length - self._done, end - pos)
            if take or head.length == 0:
                chunk = view[pos:pos + take]
                pos += take
                offset = self._done
                self._done += take
                final = self._done == head.length
                last = final and head.fin
                if not self._compressed:
                    self._size += take  # the next frame's header is checked against the rest
                if self._drop:
                    message = self._skip(chunk, head, offset, last)
                else:
                    if head.mask is not None:
                        chunk = apply_mask(chunk, head.mask, offset)
                    elif not isinstance(chunk, bytes):
                        chunk = bytes(chunk)
                    message = self._data(chunk, last)
                if final:
                    self._head = None
                    fast = self._mask_required
                    if message is _DROPPED:
                        self._dropped(events)
                    elif message is not None:
                        events.append((EV_MESSAGE, message))
                if self.work > self.work_limit and pos < end:
                    self.paused = True  # inflated a turn's worth: the rest waits
                    break
            else:
                break
        return pos

    def _skip(self, chunk: bytes | memoryview, head: Header, offset: int,
              last: bool) -> str | bytes | None:
        """A piece of a dropped message: keep only its tail; _DROPPED on the last piece.

        A compressed message is still inflated (and the output thrown away) when the
        inflater keeps its context across messages: later messages refer back to it."""
        if self._compressed and self._deflate is not None:
            if self._deflate.keeps_context:
                data = apply_mask(chunk, head.mask, offset) if head.mask is not None \
                    else bytes(chunk)
                inflated = len(self._deflate.decompress(
                    data, final=last, limit=self._max_size - self._size))
                self._size += inflated
                self.work += inflated
            elif last:
                self._deflate.abandon()
        else:
            keep = _TAIL - max(0, head.length - offset - len(chunk))
            if keep > 0:  # this piece reaches into the frame's last TAIL bytes
                piece = chunk[-keep:]
                if head.mask is not None:
                    piece = apply_mask(piece, head.mask, offset + len(chunk) - len(piece))
                self._tail = (self._tail + bytes(piece))[-_TAIL:]
        return _DROPPED if last else None

    def _dropped(self, events: list[Event], payload: bytes | memoryview = b"",
                 mask: bytes | memoryview | None = None) -> None:
        """A dropped message is over: one EV_DROPPED (with the tail of a whole frame's
        `payload`, if given), and 1008 once the connection has dropped too many."""
        if payload:
            piece = payload[-_TAIL:]
            tail = apply_mask(piece, bytes(mask), len(payload) - len(piece)) \
                if mask is not None else bytes(piece)
        else:
            tail = self._tail
        self._reset()
        events.append((EV_DROPPED, tail))
        if self.budget is not None and not self.budget.dropped():
            raise ProtocolError(CLOSE_POLICY_VIOLATION, "over the rate limit")

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_CLOSE:
            self.closed = True
            return EV_CLOSE, parse_close_payload(payload)
        return (EV_PING if opcode == OP_PING else EV_PONG), payload

    def _start_data_frame(self, head: Header) -> None:
        """Check a data frame's header against the fragmentation state (RFC 6455 §5.4)."""
        if head.opcode == OP_CONT:
            if not self._message_op:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame with no message")
            if head.rsv1:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 set on a continuation frame")
            self._fragments += 1
            if self._fragments > self._max_fragments:
                raise ProtocolError(CLOSE_MESSAGE_TOO_BIG,
                                    f"message spans more than {self._max_fragments} frames")
            if not self._drop and not self._compressed and self.budget is not None and \
                    not self.budget.more(head.length):
                self._refuse()
        else:
            if self._message_op:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            self._message_op = head.opcode
            self._fragments = 1
            self._size = 0
            self._compressed = head.rsv1
            # A compressed message is charged as it inflates (_data); a plain one here.
            if self.budget is not None and \
                    not self.budget.admit(0 if head.rsv1 else head.length):
                self._refuse()

    def _refuse(self) -> None:
        """The open message is over the budget: what it has so far goes, the rest is skipped."""
        self._drop = True
        self._parts = None
        self._decoder = None

    def _data(self, chunk: bytes, last: bool) -> str | bytes | None:
        """Add one piece of a data message; return the message when `last`, else None."""
        if self._compressed and self._deflate is not None:
            # zlib inflates as a stream, so partial frames go in as they come; the budget
            # caps the output, so a compression bomb stops at the limit.
            chunk = self._deflate.decompress(chunk, final=last,
                                             limit=self._max_size - self._size)
            self._size += len(chunk)
            self.work += len(chunk)
            if self.budget is not None and not self.budget.more(len(chunk)):
                self._refuse()  # inflated past the budget: never decoded, never parsed
                return _DROPPED if last else None
        if self._message_op == OP_TEXT:
            decoder = self._decoder
            if decoder is None:
                if last:  # the whole message in one piece: the common, fast case
                    self._reset()
                    try:
                        return chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(CLOSE_INVALID_DATA, "text is not valid UTF-8") from None
                decoder = self._decoder = _Utf8Decoder()
            try:
                text = decoder.decode(chunk, last)
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text is not valid UTF-8") from None
            return self._collect(text, last, "")
        return self._collect(chunk, last, b"")

    def _collect(self, piece: AnyStr, last: bool, empty: AnyStr) -> AnyStr | None:
        """Keep `piece` of the open message; on the last one, return the whole message."""
        if not last:
            if piece:
                if self._parts is None:
                    self._parts = [piece]
                else:
                    self._parts.append(piece)
            return None
        parts = self._parts
        self._reset()
        if parts:
            parts.append(piece)
            return empty.join(parts)
        return piece

    def _reset(self) -> None:
        self._drop = False
        self._tail = b""
        self._message_op = 0
        self._parts = None
        self._decoder = None
        self._size = 0
        self._compressed = False


def encode_message(data: str | bytes, binary: bool,
                   deflate: PerMessageDeflate | None = None) -> bytes:
    """The bytes of one unfragmented, unmasked (server-to-client) data message."""
    header, payload = encode_parts(data, binary, deflate)
    return header + payload


def encode_parts(data: str | bytes, binary: bool,
                 deflate: PerMessageDeflate | None = None) -> tuple[bytes, bytes]:
    """The header and payload of one unfragmented, unmasked data message.

    Apart, so that a large payload can go to the kernel beside its header (sendmsg)
    without being copied behind it.
    """
    if isinstance(data, str):
        payload = data.encode("utf-8")
    else:
        payload = data if type(data) is bytes else bytes(data)
    opcode = OP_BINARY if binary else OP_TEXT
    if deflate is not None and deflate.should_compress(payload):
        payload = deflate.compress(payload)
        return build_header(opcode, len(payload), rsv1=True), payload
    n = len(payload)
    if n < 126:  # the common small message: a two-byte header, built inline
        return bytes((0x80 | opcode, n)), payload
    return build_header(opcode, n), payload
