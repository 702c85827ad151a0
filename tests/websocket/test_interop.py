"""Interop with two independent clients, websocket-client and websockets (sync API): every
kind and size of message, fragments, ping/pong, close codes both ways, permessage-deflate on
and off, and two greenlets writing large frames to one connection at once."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import pytest
import websocket
from websocket import ABNF
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect
from wsclient import APPS, RawClient

from wsapp.websocket.frames import OP_PING

MIB = 1 << 20
TIMEOUT = 10


class WsClient:
    """websocket-client 1.x behind a small common interface."""

    name = "websocket-client"

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=TIMEOUT)
        self.pending: list[str | bytes] = []  # messages that arrived while awaiting a pong

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.ws.getheaders().items()}

    @property
    def peer(self) -> str:
        return f"127.0.0.1:{self.ws.sock.getsockname()[1]}"

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.ws.send(message)
        else:
            self.ws.send_binary(message)

    def recv(self) -> str | bytes:
        if self.pending:
            return self.pending.pop(0)
        opcode, data = self.ws.recv_data()
        assert opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY)
        return data.decode("utf-8") if opcode == ABNF.OPCODE_TEXT else bytes(data)

    def send_fragments(self, parts: list) -> None:
        opcode = ABNF.OPCODE_TEXT if isinstance(parts[0], str) else ABNF.OPCODE_BINARY
        for i, part in enumerate(parts):
            # Encoded here: websocket-client sends str continuation frames as latin-1.
            data = part.encode("utf-8") if isinstance(part, str) else part
            self.ws.send_frame(ABNF.create_frame(data, opcode if i == 0 else ABNF.OPCODE_CONT,
                                                 fin=int(i == len(parts) - 1)))

    def ping(self, payload: bytes) -> bytes:
        self.ws.ping(payload)
        for _ in range(100):
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == ABNF.OPCODE_PONG:
                return frame.data
            assert opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY), opcode
            self.pending.append(frame.data.decode("utf-8") if opcode == ABNF.OPCODE_TEXT
                                else bytes(frame.data))
        raise AssertionError("no pong")

    def close(self, code: int, reason: str) -> tuple[int, str]:
        self.ws.close(status=code, reason=reason.encode(), timeout=TIMEOUT)
        data = self.ws.close_frame.data
        return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8")

    def expect_server_close(self) -> tuple[int, str]:
        opcode, data = self.ws.recv_data(control_frame=True)
        assert opcode == ABNF.OPCODE_CLOSE, (opcode, data[:40])
        return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8")

    def abort(self) -> None:
        self.ws.shutdown()


class WebsocketsClient(WsClient):
    """websockets' sync client (permessage-deflate unless compression=None)."""

    name = "websockets"

    def __init__(self, url: str, **kwargs) -> None:
        kwargs.setdefault("max_size", 2 * MIB)
        self.ws = connect(url, proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                          ping_interval=None, legacy=True, **kwargs)

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.ws.response.headers.raw_items()}

    @property
    def peer(self) -> str:
        return f"127.0.0.1:{self.ws.local_address[1]}"

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def recv(self) -> str | bytes:
        return self.ws.recv(timeout=TIMEOUT)

    def send_fragments(self, parts: list) -> None:
        self.ws.send(iter(parts))

    def ping(self, payload: bytes) -> bytes:
        # websockets sets the event only for a pong carrying this ping's payload.
        assert self.ws.ping(payload).wait(TIMEOUT)
        return payload

    def close(self, code: int, reason: str) -> tuple[int, str]:
        self.ws.close(code, reason)
        return self.ws.close_code, self.ws.close_reason

    def expect_server_close(self) -> tuple[int, str]:
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(100):
                self.ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd is not None, "the server sent no close frame"
        return info.value.rcvd.code, info.value.rcvd.reason

    def abort(self) -> None:
        self.ws.close_socket()


CLIENTS = {
    "websocket-client": WsClient,
    "websockets-deflate": WebsocketsClient,
    "websockets-plain": lambda url: WebsocketsClient(url, compression=None),
}


@pytest.fixture(params=CLIENTS.values(), ids=CLIENTS.keys())
def client_factory(request, server):
    """Opens clients of one kind to the session server; closes them after the test."""
    opened = []

    def factory(path: str = "/ws/echo"):
        client = request.param(server.url(path))
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.abort()


def _text(size: int, seed: int = 0) -> str:
    """`size` characters of mixed-width UTF-8 text."""
    alphabet = "abc xyz 0123 é ß € 中文 😀 \u200b"
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(size))


MESSAGES = {
    "text": "hello, wörld ✓",
    "binary": bytes(range(256)) * 4,
    "empty-text": "",
    "empty-binary": b"",
    "text-1mib": ("0123456789abcdef" * (MIB // 16)),
    "binary-1mib": random.Random(1).randbytes(MIB),
    "text-unicode-64k": _text(64 * 1024),
    "binary-nul": b"\x00" * 70000,
}


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
def test_echo_keeps_type_and_content(client_factory, message):
    client = client_factory()
    client.send(message)
    got = client.recv()
    assert type(got) is type(message)
    assert got == message


def test_many_messages_in_order(client_factory):
    client = client_factory()
    sent = [f"message {i} " + "é" * i for i in range(200)] + [bytes([i]) * i for i in range(50)]
    for message in sent:
        client.send(message)
    assert [client.recv() for _ in sent] == sent


FRAGMENTED = {
    "text": ["frag", "mented ", "tëxt", ""],
    "text-many": [f"{i}," for i in range(500)],
    "binary": [b"\x00\x01", b"", b"\x02" * 70000, b"end"],
    "empty-fragments": [b"", b"", b""],
}


@pytest.mark.parametrize("parts", FRAGMENTED.values(), ids=FRAGMENTED.keys())
def test_fragmented_message_is_reassembled(client_factory, parts):
    client = client_factory()
    client.send_fragments(parts)
    expected = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
    assert client.recv() == expected
    client.send("after")  # the connection is still in a clean state
    assert client.recv() == "after"


@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))])
def test_ping_gets_pong_with_same_payload(client_factory, payload):
    client = client_factory()
    client.send("before")
    assert client.ping(payload) == payload
    assert client.recv() == "before"


def test_client_close_code_and_reason_are_answered(client_factory, server):
    client = client_factory()
    client.send("hi")
    assert client.recv() == "hi"
    peer = client.peer
    code, _ = client.close(4000, "bye")
    assert code == 4000
    server.wait_for_log(rf"close {peer} /ws/echo \S+ sent=4000 received=4000 bye")


def test_client_close_1000_is_answered(client_factory, server):
    client = client_factory()
    peer = client.peer
    client.send("hi")
    assert client.recv() == "hi"
    assert client.close(1000, "")[0] == 1000
    server.wait_for_log(rf"close {peer} /ws/echo \S+ sent=1000 received=1000")


def test_server_closes_1009_past_the_message_limit(client_factory, server):
    client = client_factory()
    client.send(b"ok")
    assert client.recv() == b"ok"
    client.send(random.Random(2).randbytes(MIB + 1))
    code, reason = client.expect_server_close()
    assert code == 1009
    assert "limit" in reason
    server.assert_echo()


def test_server_closes_1009_for_a_compressed_message_past_the_limit(server):
    client = WebsocketsClient(server.url())
    try:
        assert "permessage-deflate" in client.headers["sec-websocket-extensions"]
        client.send(b"\x00" * (MIB + 1))  # a few KB on the wire, past the limit inflated
        code, reason = client.expect_server_close()
        assert code == 1009
        assert "limit" in reason
    finally:
        client.abort()


def test_server_closes_1002_on_reserved_bits(server):
    client = WsClient(server.url())
    try:
        frame = ABNF(fin=1, rsv1=0, rsv2=1, rsv3=0, opcode=ABNF.OPCODE_TEXT, data="x")
        client.ws.send_frame(frame)
        code, reason = client.expect_server_close()
        assert code == 1002
        assert "reserved" in reason
    finally:
        client.abort()


def test_server_closes_1007_on_invalid_utf8(server):
    client = WsClient(server.url())
    try:
        client.ws.send_frame(ABNF.create_frame(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
                                               b"\xed\xa0\x80", ABNF.OPCODE_TEXT))
        code, _ = client.expect_server_close()
        assert code == 1007
    finally:
        client.abort()


# -- permessage-deflate -------------------------------------------------------------------------

def test_websockets_negotiates_deflate_by_default(server):
    client = WebsocketsClient(server.url())
    try:
        assert client.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        peer = client.peer
        big = _text(100_000, seed=3)
        for _ in range(3):  # context takeover: later messages refer back to earlier ones
            client.send(big)
            assert client.recv() == big
    finally:
        client.abort()
    server.wait_for_log(rf"upgrade {peer} /ws/echo deflate")


@pytest.mark.parametrize("factory", [
    lambda url: WsClient(url),
    lambda url: WebsocketsClient(url, compression=None),
], ids=["websocket-client", "websockets-compression-off"])
def test_no_deflate_when_not_offered(server, factory):
    client = factory(server.url())
    try:
        assert "sec-websocket-extensions" not in client.headers
        peer = client.peer
        client.send("x" * 1000)
        assert client.recv() == "x" * 1000
    finally:
        client.abort()
    match = server.wait_for_log(rf"upgrade {peer} /ws/echo.*")
    assert "deflate" not in match.group(0)


def test_no_deflate_when_the_server_disables_it(start_server):
    srv = start_server("--no-deflate")
    client = WebsocketsClient(srv.url())
    try:
        assert "sec-websocket-extensions" not in client.headers
        client.send("y" * 5000)
        assert client.recv() == "y" * 5000
    finally:
        client.abort()


@pytest.mark.parametrize("params", [
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 10, "client_max_window_bits": 9},
    {"client_max_window_bits": True},
], ids=["no-context-takeover", "small-windows", "client-bits-any"])
def test_deflate_parameters_interoperate(server, params):
    factory = ClientPerMessageDeflateFactory(**params)
    client = WebsocketsClient(server.url(), compression=None, extensions=[factory])
    try:
        assert "permessage-deflate" in client.headers["sec-websocket-extensions"]
        for i in range(5):
            message = _text(20_000 + i, seed=i) if i % 2 else _text(30_000, seed=9).encode()
            client.send(message)
            assert client.recv() == message
        client.send_fragments(["a" * 10_000, "b" * 10_000, "c"])
        assert client.recv() == "a" * 10_000 + "b" * 10_000 + "c"
    finally:
        client.abort()


# -- heartbeat ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pinging_server(start_module_server):
    return start_module_server("--ping-interval", "0.3", "--ping-timeout", "1")


def test_server_pings_and_a_ponging_client_stays(pinging_server):
    client = WsClient(pinging_server.url())
    try:
        pings = 0
        deadline = time.monotonic() + 30
        while pings < 3 and time.monotonic() < deadline:  # websocket-client answers each
            opcode, _ = client.ws.recv_data_frame(control_frame=True)
            assert opcode == ABNF.OPCODE_PING
            pings += 1
        assert pings == 3
        client.send("still here")
        assert client.recv() == "still here"
    finally:
        client.abort()


def test_server_closes_a_client_that_never_pongs(pinging_server):
    with RawClient.open(pinging_server.port) as client:
        peer = client.peer
        assert client.recv_frame(timeout=15).opcode == OP_PING
        code, reason = client.expect_close(timeout=15)  # pings are read, never answered
        assert code == 1011
        assert "ping" in reason
    pinging_server.wait_for_log(rf"close {peer} /ws/echo \S+ sent=1011 ")


# -- two greenlets writing to one connection ---------------------------------------------------

PUSH_COUNT = 24
PUSH_SIZE = 256 * 1024


def pushed(seq: int, size: int = PUSH_SIZE) -> bytes:
    """What tests/apps/push_echo.py pushes as message `seq`."""
    return struct.pack("!I", seq) + random.Random(seq).randbytes(size - 4)


@pytest.fixture(scope="module")
def push_server(start_module_server):
    return start_module_server(script=APPS / "push_echo.py")


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_push_greenlet_and_echo_share_a_connection(push_server, compression):
    url = push_server.url(f"/ws/push-echo?count={PUSH_COUNT}&size={PUSH_SIZE}")
    texts = [f"{i:04d}|" + _text(60_000, seed=100 + i) for i in range(PUSH_COUNT)]
    # A small receive buffer and queue make the server's writes block mid-frame often, which
    # is when a second writer could slip its bytes in if sends were not serialised.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", push_server.port))
    ws = connect(url, sock=sock, proxy=None, compression=compression, max_size=None,
                 max_queue=2, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None,
                 legacy=True)
    errors: list[BaseException] = []

    def send_all() -> None:
        try:
            for text in texts:
                ws.send(text)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    sender = threading.Thread(target=send_all, daemon=True)
    try:
        sender.start()
        time.sleep(1.0)  # not reading yet: the buffers fill and the server's writes block
        got_text: list[str] = []
        got_binary: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got_text) < len(texts) or len(got_binary) < PUSH_COUNT:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (len(got_text), len(got_binary))
            message = ws.recv(timeout=remaining)
            (got_text if isinstance(message, str) else got_binary).append(message)
        sender.join(TIMEOUT)
        assert not sender.is_alive() and not errors, errors
        assert len(got_binary) == PUSH_COUNT
        for seq, data in enumerate(got_binary):
            assert data == pushed(seq), f"pushed message {seq} corrupted or out of order"
        assert got_text == texts
        ws.close()
        assert ws.close_code == 1000
    finally:
        ws.close_socket()


def test_every_connection_was_closed_and_logged(server):
    """Runs last in this module: every client above is gone, so the session server holds no
    connection, and each logged upgrade has its close line."""
    server.assert_clean()
