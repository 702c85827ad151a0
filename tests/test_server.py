"""serve.py as a process: graceful shutdown on SIGTERM, the CLI's help and errors, and
settings from WSAPP_* environment variables."""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import sys
import time

import pytest
import websocket
from serverproc import ROOT, SERVE, clean_env, free_port, port_open
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsclient import RawClient

from wsapp.config import Settings
from wsapp.websocket.frames import OP_TEXT


def test_sigterm_closes_every_websocket_with_1001_and_exits_0(start_server):
    srv = start_server("--close-timeout", "3", "--shutdown-timeout", "5")
    wsc = websocket.create_connection(srv.url(), timeout=10)
    wss = connect(srv.url(), proxy=None, open_timeout=10, close_timeout=10, ping_interval=None,
                  legacy=True)
    raw = RawClient.open(srv.port)
    realtime = websocket.create_connection(srv.url("/ws"), timeout=10)  # a route of its own
    try:
        assert '"op":"welcome"' in realtime.recv()
        wsc.send("a")
        assert wsc.recv() == "a"
        wss.send("b")
        assert wss.recv(timeout=10) == "b"
        raw.send_frame(OP_TEXT, b"c")
        assert raw.recv_frame().payload == b"c"
        peers = [wsc.sock.getsockname()[1], wss.local_address[1], raw.port]
        realtime_port = realtime.sock.getsockname()[1]

        srv.proc.send_signal(signal.SIGTERM)

        code, reason = raw.expect_close(timeout=10)
        assert code == 1001 and "shut" in reason
        raw.send_close(1001)
        assert raw.wait_eof(10)

        opcode, data = wsc.recv_data(control_frame=True)  # answers the close itself
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1001 and b"shut" in data[2:]

        with pytest.raises(ConnectionClosed) as info:
            wss.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert "shut" in info.value.rcvd.reason

        assert srv.proc.wait(timeout=15) == 0
    finally:
        realtime.shutdown()
        wsc.shutdown()
        wss.close_socket()
        raw.close()
    log = srv.log()
    # one close line for each connection counted, all written before the count
    summary = log.index("shutdown: closed 4 WebSocket connection(s)")
    closes = re.findall(r"close 127\.0\.0\.1:(\d+) (/ws\S*) \S+ sent=1001 ", log[:summary])
    assert sorted(closes) == sorted([(str(port), "/ws/echo") for port in peers]
                                    + [(str(realtime_port), "/ws")]), log
    assert "Traceback" not in log


def test_sigterm_does_not_wait_forever_for_a_silent_client(start_server):
    srv = start_server("--close-timeout", "1", "--shutdown-timeout", "2")
    with RawClient.open(srv.port) as raw:
        raw.send_frame(OP_TEXT, b"hi")
        assert raw.recv_frame().payload == b"hi"
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        # The client never answers the close frame; the server gives up on it and exits.
        assert srv.proc.wait(timeout=20) == 0
        elapsed = time.monotonic() - started
        assert raw.expect_close(timeout=5)[0] == 1001
    assert elapsed < 20
    assert "Traceback" not in srv.log()


def test_sigterm_with_no_connections_exits_0(start_server):
    srv = start_server()
    srv.assert_echo(timeout=5)
    assert srv.stop(timeout=15) == 0
    assert not port_open(srv.port)


def run_serve(*args: str, env: dict[str, str] | None = None,
              timeout: float = 30) -> subprocess.CompletedProcess:
    """Run serve.py to completion (for --help and refused settings)."""
    return subprocess.run([sys.executable, str(SERVE), *args], cwd=ROOT,
                          env=clean_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_flag():
    result = run_serve("--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for f in dataclasses.fields(Settings):
        assert "--" + f.name.replace("_", "-") in out, f.name
        assert "WSAPP_" + f.name.upper() in out.replace("\n", " ").replace(" ", ""), f.name
    assert "--no-deflate" in out


def test_the_start_up_log_says_demo_mode_and_where_the_data_goes(start_server, tmp_path):
    demo = start_server("--data-dir", str(tmp_path / "d"))
    log = demo.wait_for_log(r"data: .*\n").group(0)
    assert f"SQLite {tmp_path}/d/wsapp.db" in log and f"{tmp_path}/d/secret" in log, log
    assert "WARNING wsapp.server: DEMO MODE: no --api-key" in demo.log()
    keyed = start_server("--api-key", "k", "--secret", "s" * 32, "--data-dir", str(tmp_path))
    log = keyed.wait_for_log(r"data: .*\n").group(0)
    assert "token keys from --secret" in log and "broker memory" in log, log
    assert "demo mode" not in keyed.log().lower()


def test_wsapp_port_environment_variable(start_server):
    port = free_port()
    srv = start_server(env={"WSAPP_PORT": str(port), "WSAPP_MAX_MESSAGE_SIZE": "1000"},
                       port_flag=False)
    assert srv.port == port
    srv.assert_echo(timeout=5)
    with RawClient.open(port) as raw:  # the other variable took effect too
        raw.send_frame(OP_TEXT, b"x" * 1001)
        assert raw.expect_close()[0] == 1009


def test_flag_wins_over_environment(start_server):
    env_port = free_port()
    srv = start_server(env={"WSAPP_PORT": str(env_port)})
    assert srv.port != env_port
    srv.assert_echo(timeout=5)
    assert not port_open(env_port)


INVALID = {  # the one line each prints (after "serve.py: error: ")
    "port-word": (["--port", "abc"], {}, "--port: cannot read 'abc' as int"),
    "unknown-flag": (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    "env-word": ([], {"WSAPP_MAX_CONNECTIONS": "many"},
                 "WSAPP_MAX_CONNECTIONS: cannot read 'many' as int"),
    "port-range": (["--port", "70000"], {}, "--port: 70000 is not in 0..65535"),
    "negative-size": (["--max-message-size", "-1"], {}, "--max-message-size: must be at least"),
    "negative-timeout": (["--handshake-timeout", "-1"], {}, "--handshake-timeout: must be"),
    "deflate-level": ([], {"WSAPP_DEFLATE_LEVEL": "11"}, "WSAPP_DEFLATE_LEVEL: must be 1..9"),
    "no-workers": (["--workers", "0"], {}, "--workers: must be at least 1, got 0"),
}


@pytest.fixture(scope="module")
def invalid_runs(tmp_path_factory):
    """Every INVALID case run at once (each is a whole interpreter start): name -> (return
    code or None if it started serving, stderr)."""
    procs = {}
    try:
        for name, (args, env, _) in INVALID.items():
            port = free_port()
            argv = [sys.executable, str(SERVE), "--host", "127.0.0.1"]
            if "--port" not in args:
                argv += ["--port", str(port)]
            data_dir = str(tmp_path_factory.mktemp("data"))
            procs[name] = port, subprocess.Popen(
                argv + args, cwd=ROOT, env=clean_env(WSAPP_DATA_DIR=data_dir, **env),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        results = {}
        deadline = time.monotonic() + 60
        while len(results) < len(procs) and time.monotonic() < deadline:
            for name, (port, proc) in procs.items():
                if name in results:
                    continue
                if proc.poll() is not None:
                    results[name] = proc.returncode, proc.stderr.read()
                elif port_open(port):  # it took the bad value and is serving
                    results[name] = None, ""
            time.sleep(0.1)
        return results
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            proc.stderr.close()


@pytest.mark.parametrize("name", INVALID)
def test_invalid_setting_gives_a_clear_error(invalid_runs, name):
    args, env, mentions = INVALID[name]
    assert name in invalid_runs, "serve.py neither exited nor listened within 60s"
    code, err = invalid_runs[name]
    assert code is not None, f"serve.py accepted {args or env} and started serving"
    assert code == 2
    assert "Traceback" not in err, err
    # One line naming the flag (or variable) and the reason, then where the flags are: not
    # argparse's usage block, whose last line used to be the only one that mattered.
    first, pointer = err.splitlines()
    assert first.startswith(f"serve.py: error: {mentions}"), err
    assert pointer == "Run 'serve.py --help' to see every flag."


def test_connections_run_and_close_in_process_even_when_handle_raises():
    """make_server's own connection start (one C call shallower than gevent's) keeps
    gevent's contract: handle(sock, address) runs, and the socket is closed afterwards,
    also when handle raises."""
    import gevent
    import gevent.socket

    from wsapp.server import Server, make_server

    seen = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = make_server(app, Settings(host="127.0.0.1", port=0))
    assert isinstance(server, Server)
    server.start()
    original = server._handle  # set by start()

    def handle(sock, address):
        seen.append(address)
        if len(seen) == 2:
            raise RuntimeError("handler bug")
        return original(sock, address)

    server._handle = handle
    try:
        for expect in (b"HTTP/1.1 200 OK", b""):
            client = gevent.socket.create_connection(("127.0.0.1", server.server_port))
            client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            with gevent.Timeout(5):
                try:
                    while chunk := client.recv(4096):
                        reply += chunk
                except ConnectionResetError:  # closed with our request unread: an RST
                    pass
            client.close()
            assert reply[:len(expect) or None] == expect  # the second: closed, no answer
        assert len(seen) == 2
    finally:
        server.stop(timeout=1)
