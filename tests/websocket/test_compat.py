"""gevent-websocket 0.10.1's WebSocket surface on wsapp's connection (wsapp.websocket.compat
and the 0.10.1 methods of connection.py), over a gevent socket pair: what each item does in
frames. tests/compat runs real third-party apps against the same items over real servers."""

import struct

import gevent
import pytest
from geventwebsocket.exceptions import ProtocolError as StockProtocolError
from geventwebsocket.exceptions import WebSocketError as StockWebSocketError
from geventwebsocket.websocket import WebSocket as StockWebSocket
from wspeer import MASK

from wsapp.websocket.compat import Stream
from wsapp.websocket.connection import ConnectionClosed
from wsapp.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_close_payload,
    build_frame,
)
from wsapp.websocket.protocol import EV_CLOSE, EV_MESSAGE, EV_PING, EV_PONG


def test_opcodes_are_gevent_websockets():
    names = [n for n in vars(StockWebSocket) if n.startswith("OPCODE_")]
    assert len(names) == 6
    from wsapp.websocket.connection import WebSocket
    assert {n: getattr(WebSocket, n) for n in names} == {n: getattr(StockWebSocket, n)
                                                         for n in names}


def test_version_and_protocol_are_the_request_headers(pair):
    ws, _, _ = pair
    assert (ws.version, ws.protocol) == (None, None)
    ws.environ.update(HTTP_SEC_WEBSOCKET_VERSION="13", HTTP_SEC_WEBSOCKET_PROTOCOL="chat, v2")
    assert (ws.version, ws.protocol, ws.subprotocol) == ("13", "chat, v2", None)


def test_send_frame_with_each_opcode(pair):
    ws, peer, _ = pair
    ws.send_frame("h\u00e9", OP_TEXT)
    ws.send_frame(b"\x00\xff", OP_BINARY)
    ws.send_frame("pi", OP_PING)
    assert ws.ping_sent_at  # a ping the heartbeat now waits an answer to
    ws.send_frame(b"po", OP_PONG)
    assert [peer.next_event() for _ in range(4)] == [
        (EV_MESSAGE, "h\u00e9"), (EV_MESSAGE, b"\x00\xff"), (EV_PING, b"pi"), (EV_PONG, b"po")]
    ws.send_frame(b"raw", OP_CONT)  # what the app asked for, even out of place
    assert peer.sock.recv(5) == build_frame(OP_CONT, b"raw")


def test_send_frame_close_starts_the_closing_handshake(pair):
    ws, peer, _ = pair
    ws.send_frame(struct.pack("!H", 4001) + b"later", OP_CLOSE)
    assert peer.next_event() == (EV_CLOSE, (4001, "later"))
    assert ws.closed and ws.sent_close_code == 4001
    with pytest.raises(ConnectionClosed) as caught:
        ws.send_frame("x", OP_TEXT)
    assert isinstance(caught.value, StockWebSocketError)
    with pytest.raises(StockWebSocketError):
        ws.send_frame(b"p", OP_PING)
    peer.send(OP_CLOSE, build_close_payload(4001, ""))
    assert ws.receive() is None  # the peer's answer completes it
    assert peer.eof()


def test_close_takes_gevent_websockets_keywords(pair):
    ws, peer, _ = pair
    gevent.spawn_later(0.05, peer.send, OP_CLOSE, build_close_payload(4002))
    ws.close(code=4002, message=b"kw")
    assert peer.next_event() == (EV_CLOSE, (4002, "kw"))
    with pytest.raises(StockWebSocketError):
        ws.receive()  # closed by the route itself: nothing left to report
    ws.close()  # again: nothing happens


def test_read_frame_hands_frames_out_unanswered(pair):
    ws, peer, _ = pair
    peer.send(OP_TEXT, "d\u00e9j\u00e0".encode())
    peer.send(OP_BINARY, b"\x01", fin=False)
    peer.send(OP_CONT, b"\x02")
    peer.send(OP_PING, b"hb")
    header, payload = ws.read_frame()
    assert (header.opcode, header.fin, header.length, payload) == (
        OP_TEXT, True, 6, "d\u00e9j\u00e0".encode())
    header, payload = ws.read_frame()  # fragments come reassembled, as one final frame
    assert (header.opcode, header.fin, payload) == (OP_BINARY, True, b"\x01\x02")
    header, payload = ws.read_frame()
    assert (header.opcode, payload) == (OP_PING, b"hb")
    ws.send("no pong before this")  # read_frame() did not answer the ping...
    assert peer.next_event() == (EV_MESSAGE, "no pong before this")
    ws.handle_ping(header, payload)  # ...handle_ping() does
    assert peer.next_event() == (EV_PONG, b"hb")


def test_read_frame_then_handle_close_answers_with_code_and_reason(pair):
    ws, peer, _ = pair
    peer.send(OP_CLOSE, build_close_payload(4003, "done"))
    header, payload = ws.read_frame()
    assert (header.opcode, payload) == (OP_CLOSE, build_close_payload(4003, "done"))
    assert ws.close_code == 4003 and ws.sent_close_code is None  # recorded, not answered
    ws.handle_close(header, payload)
    assert peer.next_event() == (EV_CLOSE, (4003, "done"))
    assert peer.eof()
    with pytest.raises(StockWebSocketError):
        ws.read_frame()


def test_a_close_frame_read_and_ignored_is_answered_by_the_next_receive(pair):
    ws, peer, _ = pair
    peer.send(OP_CLOSE, build_close_payload(4004, "bye"))
    assert ws.read_frame()[0].opcode == OP_CLOSE
    assert ws.receive() is None
    assert peer.next_event() == (EV_CLOSE, (4004, ""))
    with pytest.raises(StockWebSocketError):
        ws.receive()


def test_read_frame_fails_a_protocol_error_then_raises_it(pair):
    ws, peer, _ = pair
    peer.sock.sendall(build_frame(OP_TEXT, b"x", rsv1=True, mask=MASK))
    with pytest.raises(StockProtocolError):
        ws.read_frame()
    assert peer.next_event()[:1] == (EV_CLOSE,)
    assert ws.sent_close_code == 1002


def test_handle_close_checks_the_payload_as_0_10_1_does(pair):
    ws, _, _ = pair
    with pytest.raises(StockProtocolError):
        ws.handle_close(None, b"\x03")
    with pytest.raises(StockProtocolError):
        ws.handle_close(None, struct.pack("!H", 999))
    with pytest.raises(UnicodeError):
        ws.handle_close(None, struct.pack("!H", 1000) + b"\xff")
    assert not ws.closed


def test_handle_pong_stops_the_heartbeat_waiting(pair):
    ws, peer, _ = pair
    ws.ping(b"x")
    assert ws.ping_sent_at
    ws.handle_pong(None, b"x")
    assert ws.ping_sent_at == 0.0


def test_raw_read_and_raw_write_bypass_framing(pair):
    ws, peer, _ = pair
    ws.raw_write(b"\x81\x02hi")
    assert peer.next_event() == (EV_MESSAGE, "hi")
    peer.sock.sendall(b"abcdef")
    assert ws.raw_read(4) == b"abcd"
    stream = ws.stream
    assert isinstance(stream, Stream) and stream.handler is None
    assert stream.read(2) == b"ef"
    peer.sock.sendall(b"xy")
    peer.sock.close()
    assert ws.raw_read(5) == b"xy"  # fewer only at the end of input


def test_stream_and_raw_callables_are_gone_once_closed(pair):
    ws, peer, _ = pair
    ws.terminate(1000, "")
    assert (ws.stream, ws.raw_read, ws.raw_write) == (None, None, None)
    assert ws.environ["PATH_INFO"] == "/t"  # kept, unlike 0.10.1: on_close handlers read it


def test_validate_utf8_is_incremental_and_raises_unicode_error(pair):
    ws, _, _ = pair
    validator = ws.utf8validator
    assert ws.utf8validator is validator  # one per connection, made on first use
    ws.validate_utf8(b"caf\xc3")  # a code point cut between two frames...
    assert ws.utf8validate_last[:2] == (True, False)
    ws.validate_utf8(b"\xa9")  # ...completed by the next
    assert ws.utf8validate_last[:2] == (True, True)
    with pytest.raises(UnicodeError) as caught:
        ws.validate_utf8(b"\xff")
    assert not isinstance(caught.value, StockWebSocketError)
    validator.reset()
    ws.validate_utf8(b"ok")


def test_current_app_and_logger_without_a_handler(pair):
    ws, _, _ = pair
    ws.current_app.on_close("anything")  # 0.10.1's stand-in: on_close() does nothing
    assert ws.logger.name == "wsapp.websocket.connection"
    assert ws.handler is None
