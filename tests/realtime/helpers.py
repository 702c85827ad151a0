"""Helpers for the `/ws` app protocol tests (docs/protocol.md), driven by websocket-client.

`RealtimeServer` runs the real `python serve.py --host 127.0.0.1 --port P [flags]` in a
subprocess, logs to a file, and is stopped by its PID. `Client` wraps one websocket-client
connection: JSON in and out, request/reply matching by `id`, and everything else (messages,
join/leave) kept in `events` for the test to inspect.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import serverproc
import websocket
from prometheus_client.parser import text_string_to_metric_families
from serverproc import SERVE, free_port

NOFILE = 20000
API_KEY = "test-key-123"  # the `edge` server's
TIMEOUT = 10.0  # generous: a 2-core machine running other work

# Metric names the server exposes (one place to adapt if they change).
M_CONNECTIONS = "wsapp_connections"
M_USERS = "wsapp_users_online"
M_MSG_IN = "wsapp_messages_in_total"
M_MSG_OUT = "wsapp_messages_out_total"
M_BYTES_IN = "wsapp_bytes_in_total"
M_BYTES_OUT = "wsapp_bytes_out_total"
M_FANOUT = "wsapp_fanout_seconds"
M_SLOW_DROPS = "wsapp_slow_consumer_drops_total"
M_CLOSES = "wsapp_closes_total"
M_CHANNEL_SUBS = "wsapp_channel_subscribers"


def raise_nofile() -> None:
    """Lift this process's soft fd limit as far as the hard limit (capped at NOFILE) allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Closed(Exception):
    """The server closed the WebSocket (close frame) or the TCP connection (code None)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class Metrics:
    """A parsed /metrics page: sample values by exact sample name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in self.families:
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, default: float | None = None, **labels: str) -> float | None:
        """The sample `name{labels}` exactly, or `default`."""
        return self.samples.get((name, frozenset(labels.items())), default)

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """Every sample of `name` by the value of its `label`."""
        return {dict(k)[label]: v for (n, k), v in self.samples.items()
                if n == name and label in dict(k)}

    def total(self, name: str) -> float:
        """The sum of every sample named `name`, whatever its labels."""
        return sum(v for (n, _), v in self.samples.items() if n == name)


class Client:
    """One websocket-client connection speaking the JSON protocol."""

    _ids = itertools.count(1)

    def __init__(self, ws: websocket.WebSocket, *, read_welcome: bool = True) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.welcome: dict | None = self.recv() if read_welcome else None

    # -- raw frames ------------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        self.ws.send(json.dumps(obj))

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def recv(self, timeout: float = TIMEOUT) -> dict:
        """The next JSON frame; `Closed` on a close frame or EOF; TimeoutError if none."""
        self.ws.settimeout(timeout)
        try:
            opcode, frame = self.ws.recv_data_frame(control_frame=False)
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"no frame within {timeout}s") from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError) as exc:
            raise Closed(None, str(exc)) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data or b""
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            raise Closed(code, data[2:].decode("utf-8", "replace"))
        assert opcode == websocket.ABNF.OPCODE_TEXT, f"non-text frame from the server: {opcode}"
        return json.loads(frame.data)

    # -- requests --------------------------------------------------------------------------

    def request(self, op: str, *, id: Any = "auto", timeout: float = TIMEOUT,
                **fields: Any) -> dict:
        """Send `op` with a fresh id and return its reply (ok/error/pong with that id)."""
        rid = next(self._ids) if id == "auto" else id
        self.send({"op": op, "id": rid, **fields})
        return self.reply_to(rid, timeout)

    def reply_to(self, rid: Any, timeout: float = TIMEOUT) -> dict:
        """Read until the reply carrying `rid`; other frames go to `events`."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.05, deadline - time.monotonic()))
            if frame.get("op") in ("ok", "error", "pong") and frame.get("id") == rid:
                return frame
            self.events.append(frame)

    def ok(self, op: str, **fields: Any) -> dict:
        """`request`, asserting the reply is a success."""
        reply = self.request(op, **fields)
        assert reply["op"] == ("pong" if op == "ping" else "ok"), reply
        return reply

    def sync(self, timeout: float = TIMEOUT) -> list[dict]:
        """A ping round trip; returns (and clears) every event received before the pong.

        The server answers in order, so anything it queued for us before handling the ping
        has arrived by the time the pong does.
        """
        reply = self.request("ping", t=time.time(), timeout=timeout)
        assert reply["op"] == "pong", reply
        events, self.events = self.events, []
        return events

    def wait_for(self, predicate, timeout: float = TIMEOUT) -> dict:
        """The first event (already seen or arriving) matching `predicate`; removes it."""
        for i, frame in enumerate(self.events):
            if predicate(frame):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching frame within {timeout}s; saw {self.events}")
            frame = self.recv(left)
            if predicate(frame):
                return frame
            self.events.append(frame)

    def expect_error(self, reply: dict, code: str) -> None:
        """`reply` is an `error` with `code` and a non-empty reason; the connection still works."""
        assert reply["op"] == "error", reply
        assert reply["code"] == code, reply
        assert isinstance(reply.get("reason"), str) and reply["reason"], reply
        self.sync()  # still open and answering

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.ws.close(timeout=2)
        except (OSError, websocket.WebSocketException):
            pass

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed tab)."""
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.sock.close()


class RealtimeServer:
    """serve.py in a subprocess on a free port, with its log in a file."""

    prefix = ""  # where the real-time layer is mounted (WSAPP_URL_PREFIX)

    def __init__(self, workdir: Path, flags: list[str], api_key: str = "") -> None:
        self.workdir = workdir
        self.flags = list(flags)
        self.api_key = api_key
        self.log_path = workdir / "server.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.clients: list[Client] = []
        self.extra_env: dict[str, str] = {}  # added to the clean environment

    def spawn(self) -> RealtimeServer:
        """Start the process on a free port without waiting for it (see `wait_ready`)."""
        self.port = free_port()
        self.proc = serverproc.spawn(self.argv(), self.log_path, env=self.extra_env,
                                     preexec_fn=raise_nofile)
        return self

    def argv(self) -> list[str]:
        """The command line, for the port just chosen."""
        flags = list(self.flags)
        if self.api_key:
            flags += ["--api-key", self.api_key]
        return [sys.executable, str(SERVE), "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(self.workdir / "data"), "--log-level", "INFO", *flags]

    def wait_ready(self, timeout: float = 60.0) -> RealtimeServer:
        """Wait for /healthz to answer (503 too: an engine down at start, as some tests
        want); respawn on another port if this one was taken meanwhile."""
        for _ in range(3):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.http("GET", f"{self.prefix}/healthz", timeout=2)[0] in (200, 503):
                        return self
                except OSError:
                    pass
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.stop()
                raise AssertionError(f"server not healthy within {timeout}s:\n{self.log()}")
            if "cannot listen" not in self.log():
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            self.spawn()
        raise AssertionError(f"no free port after 3 tries:\n{self.log()}")

    def start(self) -> RealtimeServer:
        return self.spawn().wait_ready()

    def stop(self) -> None:
        """Close our clients, then SIGTERM the server by PID (SIGKILL if it hangs)."""
        for client in self.clients:
            client.close()
        self.clients.clear()
        serverproc.stop(self.proc, 15)

    # -- HTTP ------------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = None, headers: dict | None = None,
             timeout: float = TIMEOUT) -> tuple[int, dict, bytes]:
        """One request; (status, lower-cased headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None
            headers = dict(headers or {})
            if body is not None:
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def mint(self, user: str) -> str:
        """A token for `user` from POST /api/tokens (with the API key when one is set)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        status, _, body = self.http("POST", f"{self.prefix}/api/tokens", {"user": user},
                                    headers)
        assert status == 200, (status, body)
        return json.loads(body)["token"]

    def metrics(self) -> Metrics:
        key = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        status, headers, body = self.http("GET", f"{self.prefix}/metrics", headers=key)
        assert status == 200, (status, body[:500])
        return Metrics(body.decode("utf-8"))

    def wait_metric(self, predicate, timeout: float = TIMEOUT) -> Metrics:
        """Poll /metrics until `predicate(metrics)` holds; the last page either way."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if predicate(m) or time.monotonic() > deadline:
                return m
            time.sleep(0.1)

    def feed(self) -> dict:
        """The first feed's entry on /healthz (tests run one feed per server)."""
        status, _, body = self.http("GET", "/healthz")
        assert status == 200, (status, body[:500])
        return json.loads(body)["feeds"][0]

    def wait_feed(self, predicate, timeout: float = TIMEOUT, what: str = "feed state") -> dict:
        """Poll /healthz until `predicate(feed entry)` holds; AssertionError if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            feed = self.feed()
            if predicate(feed):
                return feed
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached in {timeout}s: {feed}\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.1)

    # -- WebSockets ------------------------------------------------------------------------

    def url(self, token: str | None = None) -> str:
        base = f"ws://127.0.0.1:{self.port}{self.prefix}/ws"
        return base if token is None else f"{base}?token={quote(token, safe='')}"

    def connect(self, user: str | None = None, *, token: str | None = None,
                read_welcome: bool = True, **options: Any) -> Client:
        """A connection as `user` (a fresh token), with `token`, or anonymous."""
        if user is not None:
            token = self.mint(user)
        ws = websocket.create_connection(self.url(token), timeout=TIMEOUT, **options)
        client = Client(ws, read_welcome=read_welcome)
        self.clients.append(client)
        return client

    # -- the log ---------------------------------------------------------------------------

    def log(self) -> str:
        return serverproc.read_log(self.log_path)

    def wait_for_log(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        return serverproc.wait_for_log(self.log_path, pattern, timeout)


