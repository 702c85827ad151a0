"""permessage-deflate (RFC 7692): offer negotiation and per-message (de)compression, pure.

Theory of operation: `negotiate` reads the client's Sec-WebSocket-Extensions value and picks
the first permessage-deflate offer that is well formed, returning the agreed `DeflateParams`
and the response header value. `PerMessageDeflate` then holds one connection's zlib state:
`compress` turns a whole outgoing message into an RSV1 payload, `decompress` inflates an
incoming compressed message frame by frame under a byte budget, so a compression bomb costs
at most about that budget. zlib objects are made on first use and, where the agreed
parameters say no context takeover, dropped after each message: idle connections hold none.

zlib facts this relies on (checked by tests/test_deflate.py):
- zlib refuses a raw-deflate window of 8 bits (compressobj(wbits=-8) raises). A 9-bit
  compressor is used instead; zlib never emits a distance above its window minus 262 bytes
  (250 for 9 bits), so its output is valid for a peer inflating with a 256-byte window.
- With Z_SYNC_FLUSH every message ends in the empty stored block 00 00 ff ff, which RFC 7692
  §7.2.1 strips and the receiver puts back; an empty message therefore compresses to 00.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass

from wsapp.websocket.exceptions import ProtocolError
from wsapp.websocket.frames import CLOSE_INVALID_DATA, CLOSE_MESSAGE_TOO_BIG

EXTENSION_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"  # LEN/NLEN of the empty stored block a sync flush ends with
_MIN_BITS = 8
_MAX_BITS = 15
_ZLIB_MIN_DEFLATE_BITS = 9  # zlib cannot compress raw deflate with a 256-byte window
_OWS = " \t"
_TCHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

_FLAG_PARAMS = ("server_no_context_takeover", "client_no_context_takeover")
_BITS_PARAMS = ("server_max_window_bits", "client_max_window_bits")


@dataclass(frozen=True)
class DeflateParams:
    """The agreed permessage-deflate parameters of one connection."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15  # window the SERVER compresses with (8..15)
    client_max_window_bits: int = 15  # window the CLIENT compresses with (8..15)

    def __post_init__(self) -> None:
        for name in _BITS_PARAMS:
            bits = getattr(self, name)
            if not _MIN_BITS <= bits <= _MAX_BITS:
                raise ValueError(f"{name} must be 8..15, not {bits!r}")


# -- negotiation ------------------------------------------------------------------------------

def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes, so a quoted value cannot cut an offer in two."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _is_token(text: str) -> bool:
    return bool(text) and all(ch in _TCHARS for ch in text)


def _param_value(raw: str) -> str | None:
    """A parameter value (token or quoted-string holding a token), or None if malformed."""
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            return None
        out = []
        inner = iter(raw[1:-1])
        for ch in inner:
            if ch == '"':
                return None  # an unescaped quote ends the string early: junk follows it
            if ch == "\\":
                escaped = next(inner, None)
                if escaped is None:
                    return None
                ch = escaped
            out.append(ch)
        value = "".join(out)
    else:
        value = raw
    # RFC 6455 §9.1: even a quoted value must be a token once unquoted.
    return value if _is_token(value) else None


def _window_bits(value: str) -> int | None:
    """8..15 written as RFC 7692 §7.1.2 wants it (decimal, no leading zero), else None."""
    if not value.isascii() or not value.isdigit() or value.startswith("0"):
        return None
    bits = int(value)
    return bits if _MIN_BITS <= bits <= _MAX_BITS else None


def _parse_offer(element: str) -> dict[str, int | None] | None:
    """The parameters of one permessage-deflate offer (flags and a value-less
    client_max_window_bits map to None), or None if it is another extension or malformed in
    any way (RFC 7692 §5: such an offer is declined, not the connection)."""
    pieces = _split(element, ";")
    if pieces[0].strip(_OWS).lower() != EXTENSION_NAME:
        return None
    params: dict[str, int | None] = {}
    for piece in pieces[1:]:
        name, eq, raw = piece.partition("=")
        name = name.strip(_OWS).lower()
        if name in params:
            return None  # §7: duplicate parameters make the offer invalid
        if name in _FLAG_PARAMS:
            if eq:
                return None
            params[name] = None
        elif name in _BITS_PARAMS:
            if not eq:
                if name == "server_max_window_bits":
                    return None  # §7.1.2.1: this one always carries a value
                params[name] = None  # client_max_window_bits: "supported, you pick"
                continue
            value = _param_value(raw.strip(_OWS))
            bits = _window_bits(value) if value is not None else None
            if bits is None:
                return None
            params[name] = bits
        else:
            return None  # unknown parameter, or an empty one (";;", trailing ";")
    return params


def negotiate(header: str | None, *, server_max_window_bits: int = 15,
              client_max_window_bits: int = 15, server_no_context_takeover: bool = False,
              client_no_context_takeover: bool = False) -> tuple[DeflateParams, str] | None:
    """Pick the first acceptable permessage-deflate offer in a Sec-WebSocket-Extensions value
    (several offers comma-separated, several headers joined by ','); return (params, response
    header value), or None when no offer is acceptable. Never raises on bad input.

    The keywords are the server's own preferences, to save memory; each can only narrow what
    the offer gives, and all default to "no preference" (maximum compatibility):
    - server_max_window_bits < 15 (8..15): compress with a smaller window, answered even when
      not offered (RFC 7692 §7.1.2.1 allows it; Firefox before 2015 rejected that). The
      compressor drops from ~150 KiB at 15 bits to ~24 KiB at 9 (mem_level 5).
    - client_max_window_bits < 15 (9..15; zlib-based clients cannot compress with 8): asks the
      client for a smaller window, only possible if it offered the parameter (§7.1.2.2).
    - server_no_context_takeover: fresh compressor per message (§7.1.1.1 allows it unasked).
    - client_no_context_takeover: fresh inflater per message (§7.1.1.2 allows it unasked).
    An offered client_no_context_takeover is always accepted: the client volunteered it and it
    lets the server drop its inflater between messages.
    Bad preferences (a programming error, not bad input) raise ValueError.
    """
    if not _MIN_BITS <= server_max_window_bits <= _MAX_BITS:
        raise ValueError("server_max_window_bits preference must be 8..15")
    if not _ZLIB_MIN_DEFLATE_BITS <= client_max_window_bits <= _MAX_BITS:
        raise ValueError("client_max_window_bits preference must be 9..15")
    if not header or not isinstance(header, str):
        return None
    for element in _split(header, ","):
        if not element.strip(_OWS):
            continue  # HTTP list syntax allows empty elements
        offer = _parse_offer(element)
        if offer is not None:
            return _accept(offer, server_max_window_bits, client_max_window_bits,
                           server_no_context_takeover, client_no_context_takeover)
    return None


def _accept(offer: dict[str, int | None], server_pref: int, client_pref: int,
            server_nct_pref: bool, client_nct_pref: bool) -> tuple[DeflateParams, str]:
    """The agreed parameters and the response for one valid offer."""
    response = [EXTENSION_NAME]
    server_nct = "server_no_context_takeover" in offer or server_nct_pref
    if server_nct:
        response.append("server_no_context_takeover")
    # The offer's hint alone is not relied on: some clients (autobahn) only honour it when
    # the response repeats it, so it is echoed and then binds both sides.
    client_nct = "client_no_context_takeover" in offer or client_nct_pref
    if client_nct:
        response.append("client_no_context_takeover")

    server_bits = min(server_pref, offer.get("server_max_window_bits") or _MAX_BITS)
    # §7.1.2.1: accepting an offered value means answering it (same or smaller).
    if "server_max_window_bits" in offer or server_bits < _MAX_BITS:
        response.append(f"server_max_window_bits={server_bits}")

    client_bits = _MAX_BITS
    if "client_max_window_bits" in offer:  # §7.1.2.2: else the response MUST NOT carry it
        offered = offer["client_max_window_bits"]
        client_bits = min(client_pref, offered or _MAX_BITS)
        # Stated whenever the offer had a value: a client may otherwise fall back to 15.
        if offered is not None or client_bits < _MAX_BITS:
            response.append(f"client_max_window_bits={client_bits}")

    params = DeflateParams(server_no_context_takeover=server_nct,
                           client_no_context_takeover=client_nct,
                           server_max_window_bits=server_bits,
                           client_max_window_bits=client_bits)
    return params, "; ".join(response)


# -- compression ------------------------------------------------------------------------------

class PerMessageDeflate:
    """One connection's permessage-deflate state: a compressor for what the server sends and
    an inflater for what the client sends, both created on first use. Held between messages
    (with context takeover): ~150 KiB for a 15-bit compressor at mem_level 5 (~260 KiB at
    zlib's default 8), ~40 KiB for a 15-bit inflater; smaller windows shrink both."""

    __slots__ = ("params", "level", "mem_level", "min_size", "_compressor", "_inflater",
                 "_message_fed", "_stream_start")

    def __init__(self, params: DeflateParams, *, level: int = 1, mem_level: int = 5,
                 min_size: int = 64) -> None:
        if not 1 <= level <= 9:
            raise ValueError("level must be 1..9")
        if not 1 <= mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        self.params = params
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        self._compressor: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        self._message_fed = False  # some payload of the open incoming message reached zlib
        self._stream_start = False  # the inflater was restarted after a BFINAL block

    # outgoing

    def should_compress(self, data: bytes) -> bool:
        """Whether to compress a message: tiny ones grow, so they go out plain (RSV1 clear)."""
        return len(data) >= self.min_size

    def compress(self, data: bytes) -> bytes:
        """Deflate one whole message; return the payload to send with RSV1 set (tail removed).

        Honours server_no_context_takeover (fresh compressor per message, so nothing refers
        back to an earlier one) and server_max_window_bits.
        """
        comp = self._compressor
        if comp is None:
            bits = max(self.params.server_max_window_bits, _ZLIB_MIN_DEFLATE_BITS)
            comp = zlib.compressobj(self.level, zlib.DEFLATED, -bits, self.mem_level)
        out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = None if self.params.server_no_context_takeover else comp
        if not out.endswith(_TAIL):  # pragma: no cover - a sync flush always ends so
            raise RuntimeError("zlib sync flush did not end with an empty stored block")
        return out[:-4]  # for b"" this leaves b"\x00", as RFC 7692 §7.2.3.6 shows

    # incoming

    def _new_inflater(self, history: bytes = b"") -> zlib._Decompress:
        bits = self.params.client_max_window_bits
        if history:
            return zlib.decompressobj(-bits, zdict=history[-(1 << bits):])
        return zlib.decompressobj(-bits)

    @property
    def keeps_context(self) -> bool:
        """Whether the inflater carries context from one message to the next (then even a
        message that is dropped must be inflated, or later ones would not decode)."""
        return not self.params.client_no_context_takeover

    def abandon(self) -> None:
        """Forget the incoming message part way (it was dropped); only without context
        takeover, where nothing later refers back to it."""
        self._inflater = None
        self._message_fed = self._stream_start = False

    def _end_message(self) -> None:
        self._message_fed = False
        if self.params.client_no_context_takeover:
            self._inflater = None
            self._stream_start = False

    def _fail(self, code: int, reason: str) -> ProtocolError:
        """Drop all inflate state (the connection is closing) and build the error."""
        self._inflater = None
        self._message_fed = self._stream_start = False
        return ProtocolError(code, reason)

    def decompress(self, data: bytes, *, final: bool, limit: int) -> bytes:
        """Inflate one frame's payload of a compressed message; call once per frame, in order,
        final=True on the last one (which appends the 00 00 ff ff tail).

        At most `limit` bytes come out: past that, ProtocolError 1009 is raised before the rest
        is inflated, so a bomb costs about 2x `limit` bytes at peak (zlib's output buffer and
        the bytes made from it), whatever it would inflate to. A corrupt stream raises 1007.
        A message whose frames are all empty is the empty message (a lenient reading: RFC 7692
        has senders use 00, but an empty payload is not worth a close).
        """
        limit = max(limit, 0)
        if final:
            if not data and (not self._message_fed or self._stream_start):
                # Nothing to inflate, or the stream already ended with a BFINAL block: feeding
                # the tail alone would open a stored block that swallows the next message.
                self._end_message()
                return b""
            data = bytes(data) + _TAIL
        elif not data:
            return b""
        self._message_fed = True
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = self._new_inflater()
        # max_length caps zlib's output buffer; one byte over the limit proves the overflow.
        cap = min(limit, sys.maxsize - 1) + 1
        parts: list[bytes] = []
        produced = 0
        while True:
            try:
                out = inflater.decompress(data, cap - produced)
            except zlib.error as exc:
                raise self._fail(CLOSE_INVALID_DATA, f"invalid deflate data: {exc}") from None
            produced += len(out)
            if produced > limit:
                raise self._fail(CLOSE_MESSAGE_TOO_BIG,
                                 f"message inflates past the {limit}-byte limit")
            if out:
                parts.append(out)
            self._stream_start = False
            if not inflater.eof:
                break
            # A BFINAL block ended the deflate stream (RFC 7692 §7.2.3.4). Blocks may follow
            # it, so restart, seeding the new inflater with the output at hand so that later
            # references to it still resolve (older ones fail loudly with 1007, never silently).
            data = inflater.unused_data
            inflater = self._inflater = self._new_inflater(b"".join(parts))
            self._stream_start = True
            if not data or (final and data == _TAIL):
                break  # only the tail we appended is left: nothing more to inflate
        if final:
            self._end_message()
        return b"".join(parts)
