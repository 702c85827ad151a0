"""wsapp.websocket.deflate: negotiation, round trips, interop, limits and corrupt input."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
import zlib

import pytest

from wsapp.websocket.deflate import DeflateParams, PerMessageDeflate, negotiate
from wsapp.websocket.frames import CLOSE_INVALID_DATA, CLOSE_MESSAGE_TOO_BIG, ProtocolError

TAIL = b"\x00\x00\xff\xff"
MIB = 1024 * 1024


# -- helpers ----------------------------------------------------------------------------------

def corpus(n: int, seed: int) -> bytes:
    """Compressible text with repeats near and far, so matches of every distance occur."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 8)))
             for _ in range(400)]
    out = bytearray()
    while len(out) < n:
        if out and rng.random() < 0.2:
            start = rng.randrange(len(out))
            out += out[start:start + rng.randint(20, 120)]
        else:
            out += " ".join(rng.choice(words) for _ in range(12)).encode() + b"\n"
    return bytes(out[:n])


class ClientDeflater:
    """What a client's compressor does: zlib, sync flush, tail stripped."""

    def __init__(self, bits: int = 15, no_context_takeover: bool = False) -> None:
        self.bits = max(bits, 9)  # zlib refuses raw 8, like every zlib-based client
        self.nct = no_context_takeover
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -self.bits)

    def __call__(self, data: bytes) -> bytes:
        if self.nct:
            self.comp = zlib.compressobj(6, zlib.DEFLATED, -self.bits)
        out = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]


class ClientInflater:
    """What a strict client's inflater does: a window of exactly `bits`, fed so that no output
    buffer slack hides a distance beyond the window (max_length=1 per call)."""

    def __init__(self, bits: int, no_context_takeover: bool = False) -> None:
        self.bits = bits
        self.nct = no_context_takeover
        self.inf = zlib.decompressobj(-bits)

    def __call__(self, payload: bytes) -> bytes:
        if self.nct:
            self.inf = zlib.decompressobj(-self.bits)
        data = payload + TAIL
        out = []
        while data:
            out.append(self.inf.decompress(data, 1))
            data = self.inf.unconsumed_tail
        return b"".join(out)


# An independent DEFLATE decoder (RFC 1951), used to look at the distances zlib emits.

_LEN_BASE, _LEN_EXTRA, _DIST_BASE, _DIST_EXTRA = [], [], [], []
_base = 3
for _i in range(28):
    _e = 0 if _i < 8 else (_i - 4) // 4
    _LEN_BASE.append(_base)
    _LEN_EXTRA.append(_e)
    _base += 1 << _e
_LEN_BASE.append(258)
_LEN_EXTRA.append(0)
_base = 1
for _i in range(30):
    _e = 0 if _i < 4 else (_i - 2) // 2
    _DIST_BASE.append(_base)
    _DIST_EXTRA.append(_e)
    _base += 1 << _e
_CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.i, self.buf, self.n = data, 0, 0, 0

    def get(self, count: int) -> int:
        while self.n < count:
            if self.i >= len(self.data):
                raise EOFError
            self.buf |= self.data[self.i] << self.n
            self.i += 1
            self.n += 8
        value = self.buf & ((1 << count) - 1)
        self.buf >>= count
        self.n -= count
        return value

    def align(self) -> None:
        self.get(self.n % 8)

    def more(self) -> bool:
        return self.i < len(self.data) or self.n >= 8


def _codes(lengths: list[int]) -> dict[tuple[int, int], int]:
    """Canonical Huffman: (length, code) -> symbol."""
    table, code = {}, 0
    for length in range(1, 16):
        for sym, ln in enumerate(lengths):
            if ln == length:
                table[(length, code)] = sym
                code += 1
        code <<= 1
    return table


def _symbol(bits: _Bits, table: dict[tuple[int, int], int]) -> int:
    code = 0
    for length in range(1, 16):
        code = (code << 1) | bits.get(1)
        if (length, code) in table:
            return table[(length, code)]
    raise ValueError("bad Huffman code")


def inflate_raw(data: bytes, history: bytes = b"") -> tuple[bytes, int]:
    """Decode a raw DEFLATE stream that follows `history`; return (output, largest distance)."""
    bits = _Bits(data)
    out = bytearray(history)
    start = len(out)
    max_dist = 0
    final = False
    while not final and bits.more():
        final = bool(bits.get(1))
        kind = bits.get(2)
        if kind == 0:
            bits.align()
            length, nlength = bits.get(16), bits.get(16)
            assert length ^ nlength == 0xFFFF
            out += bytes(bits.get(8) for _ in range(length))
            continue
        if kind == 1:
            lit = _codes([8] * 144 + [9] * 112 + [7] * 24 + [8] * 8)
            dist = _codes([5] * 30)
        elif kind == 2:
            hlit, hdist, hclen = bits.get(5) + 257, bits.get(5) + 1, bits.get(4) + 4
            cl = [0] * 19
            for k in range(hclen):
                cl[_CL_ORDER[k]] = bits.get(3)
            cl_table = _codes(cl)
            lengths: list[int] = []
            while len(lengths) < hlit + hdist:
                sym = _symbol(bits, cl_table)
                if sym < 16:
                    lengths.append(sym)
                elif sym == 16:
                    lengths += [lengths[-1]] * (3 + bits.get(2))
                elif sym == 17:
                    lengths += [0] * (3 + bits.get(3))
                else:
                    lengths += [0] * (11 + bits.get(7))
            lit, dist = _codes(lengths[:hlit]), _codes(lengths[hlit:])
        else:
            raise ValueError("reserved block type")
        while True:
            sym = _symbol(bits, lit)
            if sym < 256:
                out.append(sym)
            elif sym == 256:
                break
            else:
                length = _LEN_BASE[sym - 257] + bits.get(_LEN_EXTRA[sym - 257])
                dsym = _symbol(bits, dist)
                distance = _DIST_BASE[dsym] + bits.get(_DIST_EXTRA[dsym])
                assert distance <= len(out), "distance before the start of the data"
                max_dist = max(max_dist, distance)
                for _ in range(length):
                    out.append(out[-distance])
    return bytes(out[start:]), max_dist


def client_offer(**params: object) -> str:
    return "; ".join(["permessage-deflate"] + [k if v is True else f"{k}={v}"
                                               for k, v in params.items()])


# -- negotiation ------------------------------------------------------------------------------

P = DeflateParams


@pytest.mark.parametrize("header, params, response", [
    ("permessage-deflate", P(), "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits", P(), "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits=10", P(client_max_window_bits=10),
     "permessage-deflate; client_max_window_bits=10"),
    ("permessage-deflate; client_max_window_bits=15", P(),
     "permessage-deflate; client_max_window_bits=15"),
    ("permessage-deflate; server_no_context_takeover", P(server_no_context_takeover=True),
     "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; client_no_context_takeover", P(client_no_context_takeover=True),
     "permessage-deflate; client_no_context_takeover"),
    ("permessage-deflate; server_max_window_bits=8", P(server_max_window_bits=8),
     "permessage-deflate; server_max_window_bits=8"),
    ("permessage-deflate; server_max_window_bits=15", P(),
     "permessage-deflate; server_max_window_bits=15"),
    ('permessage-deflate; server_max_window_bits="10"', P(server_max_window_bits=10),
     "permessage-deflate; server_max_window_bits=10"),
    ('permessage-deflate; client_max_window_bits="9"', P(client_max_window_bits=9),
     "permessage-deflate; client_max_window_bits=9"),
    ('permessage-deflate; server_max_window_bits="1\\2"', P(server_max_window_bits=12),
     "permessage-deflate; server_max_window_bits=12"),
    ("permessage-deflate ;\tserver_max_window_bits = 11 ;client_no_context_takeover  ",
     P(server_max_window_bits=11, client_no_context_takeover=True),
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"),
    ("PerMessage-Deflate; Server_No_Context_Takeover", P(server_no_context_takeover=True),
     "permessage-deflate; server_no_context_takeover"),
    # Autobahn 13.5's offer: every parameter at once.
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits; "
     "server_no_context_takeover; server_max_window_bits=8",
     P(True, True, 8, 15),
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=8"),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=9; client_max_window_bits=12",
     P(True, True, 9, 12),
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=9; client_max_window_bits=12"),
])
def test_negotiate_single_offer(header: str, params: DeflateParams, response: str) -> None:
    assert negotiate(header) == (params, response)


@pytest.mark.parametrize("bits", range(8, 16))
def test_negotiate_every_server_window(bits: int) -> None:
    assert negotiate(f"permessage-deflate; server_max_window_bits={bits}") == (
        P(server_max_window_bits=bits), f"permessage-deflate; server_max_window_bits={bits}")


@pytest.mark.parametrize("bits", range(8, 16))
def test_negotiate_every_client_window(bits: int) -> None:
    params, response = negotiate(f"permessage-deflate; client_max_window_bits={bits}")
    assert params == P(client_max_window_bits=bits)
    assert response == f"permessage-deflate; client_max_window_bits={bits}"


@pytest.mark.parametrize("header", [
    None, "", "   ", ",", "x-webkit-deflate-frame", "permessage-deflatex", "deflate",
    "permessage-deflate; foo",
    "permessage-deflate; foo=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover=1",
    'permessage-deflate; client_no_context_takeover=""',
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=",
    "permessage-deflate; client_max_window_bits=",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=08",
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate; server_max_window_bits=-9",
    "permessage-deflate; server_max_window_bits=9.0",
    "permessage-deflate; server_max_window_bits=1_0",
    "permessage-deflate; server_max_window_bits=\u0661\u0660",  # Arabic-Indic "10"
    "permessage-deflate; server_max_window_bits=ten",
    "permessage-deflate; server_max_window_bits=1 0",
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; server_max_window_bits=10"',
    'permessage-deflate; server_max_window_bits="1 0"',
    'permessage-deflate; server_max_window_bits="10"x',
    'permessage-deflate; server_max_window_bits=""',
    "permessage-deflate;",
    "permessage-deflate;; server_no_context_takeover",
    "permessage-deflate; =10",
    # A comma inside a quoted value does not start an offer.
    'foo; bar="x, permessage-deflate, y"',
    'foo; bar="\\", permessage-deflate"',
])
def test_negotiate_declines(header: str | None) -> None:
    assert negotiate(header) is None


def test_negotiate_picks_first_acceptable_offer() -> None:
    header = ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7, "
              "permessage-deflate; server_max_window_bits=10; client_max_window_bits, "
              "permessage-deflate")
    assert negotiate(header) == (P(server_max_window_bits=10),
                                 "permessage-deflate; server_max_window_bits=10")
    assert negotiate("permessage-deflate, permessage-deflate; server_no_context_takeover") == (
        P(), "permessage-deflate")


def test_negotiate_joined_headers_and_empty_elements() -> None:
    joined = "foo; a=1 , , permessage-deflate; client_no_context_takeover,"
    assert negotiate(joined) == (P(client_no_context_takeover=True),
                                 "permessage-deflate; client_no_context_takeover")


def test_negotiate_autobahn_13_7_offers() -> None:
    header = ("permessage-deflate; client_no_context_takeover; client_max_window_bits; "
              "server_no_context_takeover; server_max_window_bits=8, "
              "permessage-deflate; client_no_context_takeover; client_max_window_bits; "
              "server_no_context_takeover, "
              "permessage-deflate; client_no_context_takeover; client_max_window_bits")
    params, _ = negotiate(header)
    assert params == P(True, True, 8, 15)


def test_negotiate_never_raises_on_garbage() -> None:
    rng = random.Random(7)
    alphabet = 'permessage-deflate;,="\\ \t\x00\xff89150_client_server_max_window_bits'
    for _ in range(3000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        result = negotiate(header)
        if result is not None:
            params, response = result
            assert response.startswith("permessage-deflate")
            assert 8 <= params.server_max_window_bits <= 15
    assert negotiate("permessage-deflate; " + "x" * 100_000) is None
    assert negotiate('"' * 10_000) is None


def test_negotiate_preferences_narrow_only() -> None:
    # server window: answered unasked, and never above what was offered
    assert negotiate("permessage-deflate", server_max_window_bits=10) == (
        P(server_max_window_bits=10), "permessage-deflate; server_max_window_bits=10")
    assert negotiate(client_offer(server_max_window_bits=12), server_max_window_bits=10)[0] \
        == P(server_max_window_bits=10)
    assert negotiate(client_offer(server_max_window_bits=9), server_max_window_bits=10)[0] \
        == P(server_max_window_bits=9)
    # client window: only when the client offered the parameter
    assert negotiate("permessage-deflate", client_max_window_bits=10) == (
        P(), "permessage-deflate")
    assert negotiate(client_offer(client_max_window_bits=True), client_max_window_bits=10) == (
        P(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=10")
    assert negotiate(client_offer(client_max_window_bits=9), client_max_window_bits=12)[0] \
        == P(client_max_window_bits=9)
    # context takeover: may be switched off unasked
    assert negotiate("permessage-deflate", server_no_context_takeover=True,
                     client_no_context_takeover=True) == (
        P(True, True), "permessage-deflate; server_no_context_takeover; "
                       "client_no_context_takeover")


@pytest.mark.parametrize("prefs", [
    {"server_max_window_bits": 7}, {"server_max_window_bits": 16},
    {"client_max_window_bits": 8}, {"client_max_window_bits": 16},
])
def test_negotiate_rejects_bad_preferences(prefs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        negotiate("permessage-deflate", **prefs)


def test_params_validate_window_bits() -> None:
    with pytest.raises(ValueError):
        DeflateParams(server_max_window_bits=7)
    with pytest.raises(ValueError):
        DeflateParams(client_max_window_bits=16)
    with pytest.raises(ValueError):
        PerMessageDeflate(DeflateParams(), mem_level=0)
    for level in (0, 10):
        with pytest.raises(ValueError):
            PerMessageDeflate(DeflateParams(), level=level)


@pytest.mark.parametrize("level", [1, 6, 9])
def test_every_level_round_trips_and_higher_levels_compress_more(level: int) -> None:
    rng = random.Random(7)
    text = json.dumps([{"user": f"u{rng.randrange(500)}", "price": round(rng.random() * 100, 4),
                        "ts": 1_700_000_000 + i, "channel": "prices:BTC"}
                       for i in range(4000)]).encode()
    sent = PerMessageDeflate(DeflateParams(), level=level).compress(text)
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(sent + b"\x00\x00\xff\xff") == text
    fastest = PerMessageDeflate(DeflateParams(), level=1).compress(text)
    assert len(sent) < len(text) // 3
    if level > 1:  # the slower levels earn their CPU on payloads like this one
        assert len(sent) < len(fastest)


# -- RFC 7692 §7.2.3 examples -----------------------------------------------------------------

HELLO = bytes.fromhex("f248cdc9c90700")


def test_rfc_examples_decompress() -> None:
    pmd = PerMessageDeflate(DeflateParams())
    # §7.2.3.1, then §7.2.3.2 (the second "Hello" is a back-reference into the first)
    assert pmd.decompress(HELLO, final=True, limit=100) == b"Hello"
    assert pmd.decompress(bytes.fromhex("f200110000"), final=True, limit=100) == b"Hello"
    # §7.2.3.1 fragmented
    assert pmd.decompress(bytes.fromhex("f248cd"), final=False, limit=100) == b"He"
    assert pmd.decompress(bytes.fromhex("c9c90700"), final=True, limit=100) == b"llo"
    # §7.2.3.3 stored block, §7.2.3.4 BFINAL block, §7.2.3.5 two blocks
    for hexdata in ("0005 00faff 48656c6c6f 00", "f348cdc9c9070000",
                    "f24805000000ffff cac9c90700"):
        data = bytes.fromhex(hexdata.replace(" ", ""))
        assert pmd.decompress(data, final=True, limit=100) == b"Hello"
    # §7.2.3.6 the empty message
    assert pmd.decompress(b"\x00", final=True, limit=100) == b""


def test_rfc_examples_compress() -> None:
    pmd = PerMessageDeflate(DeflateParams())
    assert pmd.compress(b"Hello") == HELLO
    assert pmd.compress(b"Hello") == bytes.fromhex("f200110000")
    assert pmd.compress(b"") == b"\x00"


# -- round trips and context takeover ---------------------------------------------------------

MESSAGES = [corpus(n, seed) for seed, n in enumerate([3000, 1, 700, 5000, 0, 2500, 64])]


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", range(8, 16))
def test_compress_interop_strict_client_inflater(bits: int, nct: bool) -> None:
    """What the server sends inflates in a client whose window is exactly the agreed size."""
    pmd = PerMessageDeflate(DeflateParams(server_no_context_takeover=nct,
                                          server_max_window_bits=bits))
    client = ClientInflater(bits, nct)
    for msg in MESSAGES + MESSAGES:
        assert client(pmd.compress(msg)) == msg


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", range(8, 16))
def test_compress_distances_fit_the_window(bits: int, nct: bool) -> None:
    """Decode with an independent decoder and look at every distance: none may reach past
    2**bits (for 8 bits zlib compresses with 9, and must still stay within 256)."""
    pmd = PerMessageDeflate(DeflateParams(server_no_context_takeover=nct,
                                          server_max_window_bits=bits))
    history = b""
    largest = 0
    for msg in MESSAGES + MESSAGES:
        out, dist = inflate_raw(pmd.compress(msg) + TAIL, b"" if nct else history)
        assert out == msg
        history = (history + msg)[-(1 << 15):]
        largest = max(largest, dist)
    assert largest <= 1 << bits
    if bits == 15:
        assert largest > 1 << 10  # the check above has teeth: far matches do occur


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", range(8, 16))
def test_decompress_interop_zlib_client(bits: int, nct: bool) -> None:
    """What a zlib-based client sends inflates here, with every window and takeover mode."""
    pmd = PerMessageDeflate(DeflateParams(client_no_context_takeover=nct,
                                          client_max_window_bits=bits))
    client = ClientDeflater(bits, nct)
    for msg in MESSAGES + MESSAGES:
        assert pmd.decompress(client(msg), final=True, limit=1 << 20) == msg


@pytest.mark.parametrize("server_nct", [False, True])
@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("server_bits, client_bits", [(8, 15), (15, 8), (9, 12), (15, 15)])
def test_both_directions_on_one_object(server_bits: int, client_bits: int, server_nct: bool,
                                       client_nct: bool) -> None:
    params = DeflateParams(server_nct, client_nct, server_bits, client_bits)
    pmd = PerMessageDeflate(params)
    send, recv = ClientDeflater(client_bits, client_nct), ClientInflater(server_bits, server_nct)
    for msg in MESSAGES:
        assert pmd.decompress(send(msg), final=True, limit=1 << 20) == msg
        assert recv(pmd.compress(msg)) == msg


def test_server_no_context_takeover_resets_context() -> None:
    msg = corpus(2000, 99)
    shared = PerMessageDeflate(DeflateParams())
    first, second = shared.compress(msg), shared.compress(msg)
    assert len(second) < len(first) // 10  # with takeover the repeat is one back-reference

    fresh = PerMessageDeflate(DeflateParams(server_no_context_takeover=True))
    a, b = fresh.compress(msg), fresh.compress(msg)
    assert a == b == first
    # and b stands alone: a brand-new inflater reads it, with no distance before its start
    assert zlib.decompressobj(-15).decompress(b + TAIL) == msg
    assert inflate_raw(b + TAIL)[0] == msg
    assert fresh._compressor is None  # nothing held between messages


def test_client_no_context_takeover_resets_inflater() -> None:
    sender = ClientDeflater(15)  # a client that (wrongly) keeps its context
    first, second = sender(b"Hello"), sender(b"Hello")
    keeping = PerMessageDeflate(DeflateParams())
    assert keeping.decompress(first, final=True, limit=10) == b"Hello"
    assert keeping.decompress(second, final=True, limit=10) == b"Hello"

    resetting = PerMessageDeflate(DeflateParams(client_no_context_takeover=True))
    assert resetting.decompress(first, final=True, limit=10) == b"Hello"
    assert resetting._inflater is None
    with pytest.raises(ProtocolError) as err:
        resetting.decompress(second, final=True, limit=10)
    assert err.value.code == CLOSE_INVALID_DATA


def test_zlib_objects_are_created_lazily() -> None:
    pmd = PerMessageDeflate(DeflateParams())
    assert pmd._compressor is None and pmd._inflater is None
    pmd.compress(b"x" * 100)
    assert pmd._compressor is not None and pmd._inflater is None
    pmd.decompress(HELLO, final=True, limit=10)
    assert pmd._inflater is not None


def test_should_compress_threshold() -> None:
    pmd = PerMessageDeflate(DeflateParams(), min_size=64)
    assert not pmd.should_compress(b"x" * 63)
    assert pmd.should_compress(b"x" * 64)
    assert PerMessageDeflate(DeflateParams(), min_size=0).should_compress(b"")


# -- empty messages, fragments, BFINAL --------------------------------------------------------

def test_empty_message_both_directions() -> None:
    pmd = PerMessageDeflate(DeflateParams())
    assert pmd.compress(b"") == b"\x00"
    client = ClientInflater(15)
    assert client(pmd.compress(b"Hello")) == b"Hello"
    assert client(pmd.compress(b"")) == b""
    assert client(pmd.compress(b"Hello")) == b"Hello"  # context survives the empty one

    sender = ClientDeflater(15)
    assert sender(b"") == b"\x00"
    assert pmd.decompress(sender(b"Hello"), final=True, limit=10) == b"Hello"
    assert pmd.decompress(sender(b""), final=True, limit=10) == b""
    # an empty payload (not 00) is read as the empty message and leaves the context intact
    assert pmd.decompress(b"", final=True, limit=10) == b""
    assert pmd.decompress(b"", final=False, limit=10) == b""
    assert pmd.decompress(b"", final=True, limit=10) == b""
    assert pmd.decompress(sender(b"Hello"), final=True, limit=10) == b"Hello"
    assert pmd.decompress(b"", final=True, limit=0) == b""


@pytest.mark.parametrize("seed", range(5))
def test_fragmented_input(seed: int) -> None:
    rng = random.Random(seed)
    pmd = PerMessageDeflate(DeflateParams())
    sender = ClientDeflater(15)
    for msg in MESSAGES:
        payload = sender(msg)
        cuts = sorted(rng.randrange(len(payload) + 1) for _ in range(rng.randint(0, 12)))
        pieces = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)], strict=True)]
        if seed == 0:
            pieces = [payload[i:i + 1] for i in range(len(payload))] + [b""]
        got = b"".join(pmd.decompress(p, final=i == len(pieces) - 1, limit=1 << 20)
                       for i, p in enumerate(pieces))
        assert got == msg


def test_bfinal_sender_with_fresh_compressor_per_message() -> None:
    """Some clients end every message with a BFINAL block (RFC 7692 §7.2.3.4)."""
    pmd = PerMessageDeflate(DeflateParams())
    for msg in MESSAGES:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = comp.compress(msg) + comp.flush(zlib.Z_FINISH)
        assert pmd.decompress(payload, final=True, limit=1 << 20) == msg
    # the same, with the final block's stream cut over two frames and an empty last frame
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = comp.compress(b"Hello, Hello") + comp.flush(zlib.Z_FINISH)
    assert pmd.decompress(payload[:3], final=False, limit=100) \
        + pmd.decompress(payload[3:], final=False, limit=100) \
        + pmd.decompress(b"", final=True, limit=100) == b"Hello, Hello"
    assert pmd.decompress(HELLO, final=True, limit=100) == b"Hello"


def test_blocks_after_bfinal_keep_the_window() -> None:
    pmd = PerMessageDeflate(DeflateParams())
    # "Hello" with BFINAL, then a sync-flushed block that refers back to it
    msg2 = bytes.fromhex("f348cdc9c90700") + bytes.fromhex("f200110000")
    assert pmd.decompress(msg2, final=True, limit=100) == b"HelloHello"
    # junk after the final block is an error, not silently dropped
    with pytest.raises(ProtocolError) as err:
        pmd.decompress(bytes.fromhex("f348cdc9c90700") + b"\xff\xff", final=True, limit=100)
    assert err.value.code == CLOSE_INVALID_DATA


# -- limits -----------------------------------------------------------------------------------

def bomb(total: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MIB)
    out = [comp.compress(chunk) for _ in range(total // MIB)]
    out.append(comp.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


BOMB = bomb(100 * MIB)


def test_limit_is_exact() -> None:
    msg = corpus(10_000, 3)
    payload = ClientDeflater()(msg)
    assert PerMessageDeflate(DeflateParams()).decompress(payload, final=True,
                                                         limit=len(msg)) == msg
    with pytest.raises(ProtocolError) as err:
        PerMessageDeflate(DeflateParams()).decompress(payload, final=True, limit=len(msg) - 1)
    assert err.value.code == CLOSE_MESSAGE_TOO_BIG
    with pytest.raises(ProtocolError):
        PerMessageDeflate(DeflateParams()).decompress(payload, final=True, limit=0)
    huge = PerMessageDeflate(DeflateParams()).decompress(payload, final=True, limit=1 << 80)
    assert huge == msg


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_bomb_raises_1009_with_small_memory() -> None:
    assert len(BOMB) < 200_000
    pmd = PerMessageDeflate(DeflateParams())
    errors = []

    def run() -> None:
        try:
            pmd.decompress(BOMB, final=True, limit=MIB)
        except ProtocolError as exc:
            errors.append(exc)

    began = time.perf_counter()
    peak = _peak(run)
    assert time.perf_counter() - began < 2
    assert [e.code for e in errors] == [CLOSE_MESSAGE_TOO_BIG]
    assert peak < 8 * MIB
    # tracemalloc sees zlib's output: a legitimate 6 MiB message does show up
    ok = bomb(6 * MIB)
    assert _peak(lambda: PerMessageDeflate(DeflateParams()).decompress(
        ok, final=True, limit=8 * MIB)) > 6 * MIB


def test_bomb_over_many_small_frames() -> None:
    """Each frame is small, the sum is not: the caller passes the remaining budget."""
    pmd = PerMessageDeflate(DeflateParams())
    frames = [BOMB[i:i + 4096] for i in range(0, len(BOMB), 4096)]
    budget = 2 * MIB  # zlib's output buffer plus the bytes made from it: ~2x the budget
    seen = {"out": 0, "frames": 0, "code": 0}

    def run() -> None:
        remaining = budget
        try:
            for i, frame in enumerate(frames):
                out = pmd.decompress(frame, final=i == len(frames) - 1, limit=remaining)
                remaining -= len(out)
                seen["out"] += len(out)
                seen["frames"] += 1
        except ProtocolError as exc:
            seen["code"] = exc.code

    peak = _peak(run)
    assert seen["code"] == CLOSE_MESSAGE_TOO_BIG
    assert seen["out"] <= budget
    assert seen["frames"] < len(frames) // 10  # stopped early, not after inflating it all
    assert peak < 8 * MIB


# -- corrupt input ----------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff\xff",  # reserved block type
    bytes.fromhex("00 0500 0000") + b"Hello",  # stored block with a bad NLEN
    bytes.fromhex("f200110000"),  # a back-reference with no history
    b"\x00" * 3 + b"\xff" * 8,
])
def test_corrupt_data_is_1007(payload: bytes) -> None:
    pmd = PerMessageDeflate(DeflateParams())
    with pytest.raises(ProtocolError) as err:
        pmd.decompress(payload, final=True, limit=MIB)
    assert err.value.code == CLOSE_INVALID_DATA


def test_corrupt_data_in_a_middle_frame_is_1007() -> None:
    pmd = PerMessageDeflate(DeflateParams())
    with pytest.raises(ProtocolError) as err:
        # a complete block, then a block header with the reserved type 11
        pmd.decompress(HELLO + TAIL + b"\xff", final=False, limit=MIB)
    assert err.value.code == CLOSE_INVALID_DATA


# -- interop with another implementation (in memory, no sockets) ------------------------------

@pytest.mark.parametrize("offer", [
    {},
    {"client_max_window_bits": None},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 8},
    {"server_max_window_bits": 10, "client_max_window_bits": 11},
    {"server_no_context_takeover": True, "client_no_context_takeover": True,
     "server_max_window_bits": 9, "client_max_window_bits": 12},
])
@pytest.mark.parametrize("prefs", [{}, {"server_max_window_bits": 9,
                                        "client_max_window_bits": 10}])
def test_interop_with_websockets_library(offer: dict[str, object],
                                         prefs: dict[str, int]) -> None:
    """The websockets library's client side offers, reads our answer and talks to us."""
    pd = pytest.importorskip("websockets.extensions.permessage_deflate")
    frames = pytest.importorskip("websockets.frames")
    headers = pytest.importorskip("websockets.headers")
    factory = pd.ClientPerMessageDeflateFactory(**offer)
    header = headers.build_extension_list([(factory.name, factory.get_request_params())])
    params, response = negotiate(header, **prefs)
    [(name, response_params)] = headers.parse_extension_list(response)
    assert name == "permessage-deflate"
    client = factory.process_response_params(response_params, [])
    server = PerMessageDeflate(params)
    for msg in MESSAGES + MESSAGES:
        sent = client.encode(frames.Frame(frames.Opcode.BINARY, msg))
        assert sent.rsv1
        assert server.decompress(bytes(sent.data), final=True, limit=1 << 20) == msg
        back = frames.Frame(frames.Opcode.BINARY, server.compress(msg), rsv1=True)
        assert client.decode(back).data == msg
