"""The WSGI handler: a drop-in subclass of gevent-websocket's WebSocketHandler.

Pass it as `handler_class` to gevent's WSGIServer (or to either WebSocketServer). It follows
gevent-websocket 0.10.1's flow, so the methods apps override still run in the same order:
run_application() -> upgrade_websocket() -> upgrade_connection() -> run_websocket(), with
the server's `pre_start_hook` first and `server.clients`, `active_client` and `logger` as
0.10.1 has them. upgrade_connection() adapts the request to the sans-I/O handshake
(wsapp.websocket.handshake: strict checks with clear HTTP errors, the Origin check,
permessage-deflate, the subprotocol) and builds our `WebSocket` at environ["wsgi.websocket"];
run_websocket() runs the app. The 101 response is sent when the route first uses the socket,
so a route that returns an HTTP error without touching it (or a URL with no route: 404)
answers the client with that error instead of a dead WebSocket.

Settings come from `server.settings` (anything with WebSocketOptions' attributes: wsapp.server
and wsapp.gunicorn set the server's whole Settings) or, for a bare WSGIServer, from WSAPP_*
environment variables.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import time
from collections.abc import Callable
from logging import ERROR, INFO
from types import FunctionType
from typing import Any

import gevent
from gevent.pywsgi import Input, WSGIHandler
from geventwebsocket.exceptions import WebSocketError as _StockWebSocketError
from geventwebsocket.handler import Client
from geventwebsocket.handler import WebSocketHandler as _StockHandler

from wsapp.websocket.clients import ClientMap
from wsapp.websocket.connection import WebSocket
from wsapp.websocket.exceptions import BodyTimeout, HandshakeRejected, HandshakeTimeout
from wsapp.websocket.fairness import pace_of
from wsapp.websocket.frames import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL
from wsapp.websocket.handshake import Request, accept, refusal_bytes, response_bytes
from wsapp.websocket.httpguard import NOSNIFF, host_allowed, redact_query
from wsapp.websocket.logsoon import log_soon, printable
from wsapp.websocket.options import WebSocketOptions
from wsapp.websocket.tracker import ConnectionTracker

log = logging.getLogger("wsapp.websocket.handler")

_EMPTY_INPUT = io.BytesIO()
_NO_BODY = Input(None, 0)
# Header values that differ on every connection: interning them would only add entries.
_UNIQUE_VALUES = frozenset({"HTTP_SEC_WEBSOCKET_KEY", "HTTP_COOKIE", "HTTP_AUTHORIZATION"})


def share_header_strings(environ: dict) -> dict:
    """A copy of `environ` whose header names and common header values are interned.

    pywsgi builds each name anew ("HTTP_" + name) for every request, and every connection
    of a browser sends the same User-Agent, Origin, Accept-Language...: tens of thousands
    of idle connections can share one copy of each. Interned strings die with their last
    user, so a client sending odd values leaves nothing behind.
    """
    shared = {}
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            key = sys.intern(key)
            if key not in _UNIQUE_VALUES and type(value) is str and len(value) <= 256:
                value = sys.intern(value)
        shared[key] = value
    return shared


_default_settings: WebSocketOptions | None = None


class WebSocketHandler(_StockHandler):
    """gevent-websocket's handler with a hardened handshake and our WebSocket object."""

    websocket: WebSocket | None = None
    prevent_wsgi_call = False  # 0.10.1's switch: set it to upgrade without running the app
    SUPPORTED_VERSIONS = ("13",)  # RFC 6455 (0.10.1 also lists drafts 8 and 7)
    # pywsgi's, set while it parses a request (declared here for the type checker).
    command: str
    request_version: str
    rfile: Any

    # -- settings and shared state ---------------------------------------------------

    @property
    def settings(self) -> WebSocketOptions:
        """The server's settings, else WebSocketOptions from WSAPP_* (read once per process)."""
        settings = getattr(self.server, "settings", None)
        if settings is None:
            global _default_settings
            if _default_settings is None:
                _default_settings = WebSocketOptions.from_env()
            settings = self.server.settings = _default_settings
        return settings

    @property
    def tracker(self) -> ConnectionTracker:
        tracker = getattr(self.server, "tracker", None)
        if tracker is None:
            s = self.settings
            tracker = self.server.tracker = ConnectionTracker(s.ping_interval, s.ping_timeout)
        return tracker

    @property
    def allowed_hosts(self) -> list[str]:
        """The Host names served: the server's `allowed_hosts` (wsapp.server sets it, with
        its default for the bind address), else the `allowed_hosts` setting; empty: any."""
        hosts = getattr(self.server, "allowed_hosts", None)
        return self.settings.hosts() if hosts is None else hosts

    # -- the connection, counted while it is open ---------------------------------------

    def handle(self) -> None:
        """Serve the connection's requests, counted against max_connections and
        max_connections_per_ip while it is open (plain HTTP as much as WebSocket: each holds
        a socket); past a cap its first request is answered 503 or 429 unread."""
        ip = self._ip()
        refusal = self.tracker.enter(ip, self.settings)
        if refusal is not None:
            log_soon(log, INFO, "connection refused %s: %s %s", self._peer(), refusal.status,
                     refusal.reason)
            self._respond(refusal.status, refusal_bytes(refusal))
            self._linger(1 << 16)  # the server closes the socket once this returns
            return
        try:
            super().handle()
        finally:
            self.tracker.leave(ip)

    def _ip(self) -> str:
        addr = self.client_address
        return str(addr[0]) if isinstance(addr, tuple) and addr else ""

    # -- request reading with a deadline -----------------------------------------------

    def handle_one_request(self) -> Any:
        """Read one request; a client gets `handshake_timeout` seconds to send it all."""
        # Held on self, not in a local: this frame lives as long as the WebSocket does, and
        # get_environ() drops the timer as soon as the headers are in.
        self._request_timer = gevent.Timeout(self.settings.handshake_timeout, HandshakeTimeout)
        self._request_timer.start()
        try:
            return super().handle_one_request()
        except HandshakeTimeout:
            log_soon(log, INFO, "handshake timeout: %s sent no complete request within %.1fs",
                     self._peer(), self.settings.handshake_timeout)
            return None
        finally:
            self._stop_request_timer()

    def _stop_request_timer(self) -> None:
        timer = self.__dict__.pop("_request_timer", None)
        if timer is not None:
            timer.close()

    def read_request(self, raw_requestline: str) -> Any:
        """Parse the request line and headers (gevent's), after checking the request target
        is what RFC 3986 allows on the wire: printable ASCII. A raw byte over 0x7f cannot be
        decoded as the app's path or query (werkzeug raised UnicodeDecodeError: a 500 and a
        traceback per request), and a control byte is a log or terminal trick. Such a
        request gets 400 before any app sees it (gevent answers a ValueError so)."""
        words = raw_requestline.rstrip("\r\n").split(" ")
        if len(words) >= 2 and not (words[1].isascii() and words[1].isprintable()):
            raise ValueError("request target is not printable ASCII (percent-encode it)")
        return super().read_request(raw_requestline)

    def get_environ(self) -> dict:
        # Called once the request line and headers are in: the deadline no longer applies.
        self._stop_request_timer()
        # "GET" and "HTTP/1.1" as one shared copy each, in environ too
        self.command = sys.intern(self.command)
        self.request_version = sys.intern(self.request_version)
        return share_header_strings(super().get_environ())

    # -- the upgrade, in gevent-websocket's steps -----------------------------------------

    def run_application(self) -> None:
        if not self._request_allowed():
            return None
        hook = getattr(self.server, "pre_start_hook", None)
        if hook and hook(self):
            return WSGIHandler.run_application(self)  # the hook keeps this request plain
        self.result = self.upgrade_websocket()
        if self.websocket is not None:
            return self.run_websocket()
        if self.status:  # the upgrade was answered with HTTP: a refusal
            if not self.headers_sent:  # by an override, through start_response()
                self.result = self.result or []
                self.process_result()
            return None
        self.result = None
        return WSGIHandler.run_application(self)  # no upgrade asked for: plain HTTP

    # -- what every request must pass before any app code -------------------------------

    def _request_allowed(self) -> bool:
        """Check the Host, then read the body whole within `body_timeout` and at most
        `max_body_size` bytes (chunked too) and hand it to the app as a buffer; answer 421,
        413, 408 or 400 and return False when the request may not reach the app."""
        env = self.environ
        host = env.get("HTTP_HOST")
        if not host_allowed(host, self.allowed_hosts):
            self._refuse("421 Misdirected Request", f"this server does not serve the host "
                         f"{host!r}", "request for host %r refused", host)
            return False
        if not (self.content_length or self.wsgi_input.chunked_input) or (
                env.get("wsgi.input") is not self.wsgi_input):
            return True  # no body, or an upgrade (whose bytes after the head are frames)
        limit = self.settings.max_body_size
        if (self.content_length or 0) > limit:
            self._refuse("413 Content Too Large", f"request body over {limit} bytes",
                         "body of %s bytes refused (limit %d)", self.content_length, limit)
            return False
        timeout = self.settings.body_timeout
        try:
            with gevent.Timeout(timeout, BodyTimeout):
                body = self.wsgi_input.read(limit + 1)
        except BodyTimeout:
            self._refuse("408 Request Timeout", f"the body did not arrive within {timeout}s",
                         "body not sent within %.1fs", timeout)
            return False
        except (OSError, ValueError) as exc:  # a broken chunked encoding, a reset
            self._refuse("400 Bad Request", "unreadable request body", "bad body: %s", exc)
            return False
        if len(body) > limit:
            self._refuse("413 Content Too Large", f"request body over {limit} bytes",
                         "chunked body over %d bytes refused", limit)
            return False
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        return True

    def _refuse(self, status: str, reason: str, message: str, *args: Any) -> None:
        """Answer `status` with `reason` and close, without reading the rest of the request;
        log `message` % args at INFO."""
        env = self.environ
        log_soon(log, INFO, "%s %s %r: " + message, self._peer(), env.get("REQUEST_METHOD"),
                 env.get("PATH_INFO"), *args)
        self.close_connection = True
        self.wsgi_input = _NO_BODY  # pywsgi would read out the rest of the body
        self._respond(status, response_bytes(status, [], reason.encode("utf-8") + b"\n"))
        self._linger(self.settings.max_body_size)

    def _linger(self, budget: int, seconds: float = 1.0) -> None:
        """After an early answer, half-close and read out what the client still sends for a
        moment (at most `budget` bytes and `seconds`), so that the answer is not lost to the
        TCP reset that closing on unread data would send."""
        sock = self.socket
        try:
            sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(seconds, False):
                while budget > 0:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    budget -= len(chunk)
        except OSError:
            pass

    def upgrade_websocket(self) -> Any:
        """Upgrade the request if it asks for a WebSocket, else return None and leave it to
        the app as plain HTTP. Apps override this to refuse (start_response() with an error,
        then return the body) or to look at the request first."""
        if "websocket" not in self.environ.get("HTTP_UPGRADE", "").lower():
            return None
        self.close_connection = True
        return self.upgrade_connection()

    def upgrade_connection(self) -> Any:
        """Check the handshake and put a WebSocket at environ["wsgi.websocket"] and
        `self.websocket`, or answer the refusal (then `self.websocket` stays None).

        Returns None either way. Kept apart from run_websocket() so that none of the
        handshake's temporaries stay referenced from a frame that lives as long as the
        connection.
        """
        env = self.environ
        tracker = self.tracker
        ip = env.get("REMOTE_ADDR", "")
        request = Request(env.get("REQUEST_METHOD", ""), self.request_version,
                          env.get("PATH_INFO", ""), request_headers(env), ip,
                          request_scheme(env))
        s = self.settings
        try:
            # this connection is counted already (handle()): the caps apply to the others
            agreed = accept(request, s, connections=tracker.open - 1,
                            connections_from_client=tracker.per_ip.get(ip, 1) - 1,
                            app_protocol=getattr(self.application, "app_protocol", None))
        except HandshakeRejected as rej:
            log_soon(log, INFO, "handshake refused %s %s: %s %s", self._peer(),
                     env.get("PATH_INFO"), rej.status, rej.reason)
            self._respond(rej.status, refusal_bytes(rej))
            return None
        self._response_101 = agreed.response_bytes()
        _no_delay(self.socket)
        ws = WebSocket(self.socket, env, max_message_size=s.max_message_size,
                       max_fragments=s.max_fragments, deflate=agreed.deflate,
                       close_timeout=s.close_timeout, accept=self._accept,
                       initial=self._take_buffered_input(), subprotocol=agreed.protocol,
                       extensions=agreed.extensions, handler=self, pace=pace_of(s))
        self.websocket = ws
        env["wsgi.websocket"] = ws
        env["wsgi.websocket_version"] = "13"
        return None

    def _accept(self) -> None:
        """Send the 101 (the WebSocket calls this when the route first uses it)."""
        self.socket.sendall(self.__dict__.pop("_response_101"))
        self.status = "101 Switching Protocols"
        self.code = 101
        self.headers_sent = True
        log_soon(log, INFO, "upgrade %s %s%s", self._peer(), self.environ.get("PATH_INFO"),
                 " deflate" if self.websocket and self.websocket.extensions else "")

    def run_websocket(self) -> None:
        """Run the app on the WebSocket, then close it and log (this frame idles with it).

        While it runs, the connection is tracked (heartbeat, limits, shutdown) and so one
        of `server.clients`.
        """
        ws = self.websocket
        if ws is None or self.prevent_wsgi_call:
            return
        env = self.environ
        tracker = self.tracker
        tracker.add(ws, env.get("REMOTE_ADDR", ""))
        listed = self._list_client()
        answer = _RouteAnswer()
        failed = False
        body = b""
        try:
            result = call_app(self.application, env, answer)
            try:
                if not ws.accepted and answer.refused_with is not None:
                    body = b"".join(result)  # the app refused: its response goes out as is
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:
            if isinstance(exc, _StockWebSocketError) and ws.closed:
                # what using a closed connection raises: the end of the route, not a fault
                log_soon(log, INFO, "route %s ended on its closed connection: %s",
                         env.get("PATH_INFO"), exc)
            else:
                failed = True
                log_soon(log, ERROR, "route %s raised", env.get("PATH_INFO"), exc_info=exc)
        finally:
            tracker.discard(ws, env.get("REMOTE_ADDR", ""))
            if listed is not None and listed.get(self.client_address) is self.connected_client():
                del listed[self.client_address]
            self.__dict__.pop("_connected_client", None)  # it refers back to the WebSocket
        try:
            refused_with = answer.refused_with
            if not ws.accepted and not failed and refused_with is not None:
                ws.refused()  # never upgraded: the route's answer goes out instead
                self.__dict__.pop("_response_101", None)
                self._respond(refused_with, response_bytes(refused_with, answer.headers, body))
                log_soon(log, INFO, "handshake refused by route %s %s: %s", self._peer(),
                         env.get("PATH_INFO"), refused_with)
                return
            if failed or (answer.status or "")[:1] == "5":
                ws.close(CLOSE_INTERNAL_ERROR, "internal server error")
            elif not ws.closed or not ws.accepted:
                ws.close(CLOSE_NORMAL, "")
        finally:
            env["wsgi.websocket"] = None
            self.websocket = None
            if ws.accepted:
                log_soon(log, INFO, "close %s %s %.1fs sent=%s received=%s %s", self._peer(),
                         env.get("PATH_INFO"), time.monotonic() - ws.opened_at,
                         ws.sent_close_code, ws.close_code, ws.close_reason)

    # -- server.clients, active_client, logger: gevent-websocket's bookkeeping ------------

    def _list_client(self) -> dict | None:
        """Make this connection one of `server.clients`. A server without any gets wsapp's
        view of its tracker, where every tracked connection already is; a plain dict
        (gevent-websocket's WebSocketServer) gets this connection's Client, as 0.10.1 does,
        and is returned so that the entry can be taken out again."""
        server = self.server
        clients = getattr(server, "clients", None)
        if clients is None:
            server.clients = ClientMap(server)
        elif not isinstance(clients, ClientMap):
            clients[self.client_address] = self.connected_client()
            return clients
        return None

    def connected_client(self) -> Client:
        """gevent-websocket's Client(address, ws) of this connection: made on first use,
        then kept while the route runs, so that what an app sets on it stays."""
        client = self.__dict__.get("_connected_client")
        if client is None:
            client = self._connected_client = Client(self.client_address, self.websocket)
        return client

    @property
    def active_client(self) -> Client:
        """This connection's entry in `server.clients` (KeyError once its route returned)."""
        return self.server.clients[self.client_address]

    @property
    def logger(self) -> logging.Logger:
        """The server's `logger`, this module's logger on a server without one."""
        server = self.server
        logger = getattr(server, "logger", None)
        if logger is None:
            logger = server.logger = log
        return logger

    def _take_buffered_input(self) -> bytes:
        """Take bytes pywsgi already buffered past the headers, then drop its reader.

        The 8 KiB buffered reader would otherwise live as long as the connection; ours
        reads the socket directly and holds nothing while idle.
        """
        rfile, sock = self.rfile, self.socket
        data = b""
        try:
            timeout = sock.gettimeout()
            sock.settimeout(0.0)
            try:
                if rfile.peek(1):
                    data = rfile.read1(1 << 20)
            finally:
                sock.settimeout(timeout)
        except (OSError, ValueError):
            pass
        self.environ["wsgi.input"] = _EMPTY_INPUT
        self.wsgi_input = _NO_BODY  # pywsgi discards the rest of a body when the app returns
        self.__dict__.pop("headers", None)  # pywsgi's parsed copy; environ has them all
        self.rfile = _EMPTY_INPUT
        return data

    def _respond(self, status: str, response: bytes) -> None:
        """Send a plain HTTP response (a refusal) and close."""
        self.status = status
        self.code = int(status.split()[0])
        self.headers_sent = True
        try:
            self.socket.sendall(response)
        except OSError:
            pass

    # -- logging ---------------------------------------------------------------------

    def _peer(self) -> str:
        addr = self.client_address
        if isinstance(addr, tuple) and len(addr) >= 2:
            return f"{addr[0]}:{addr[1]}"
        return str(addr)

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        """pywsgi's, adding nosniff unless the app set X-Content-Type-Options itself."""
        if not any(k.lower() == "x-content-type-options" for k, _ in headers):
            headers = [*headers, NOSNIFF]
        return super().start_response(status, headers, exc_info)

    def log_request(self) -> None:
        # WebSocket upgrades and refusals are logged by us with more detail.
        environ = getattr(self, "environ", None)
        if environ and "websocket" in environ.get("HTTP_UPGRADE", "").lower():
            return
        WSGIHandler.log_request(self)

    def format_request(self) -> str:
        """pywsgi's access log line, with credentials in the query (?token=...) redacted and
        escaped: its request line is what the client sent (an ESC or a raw control byte in a
        path would otherwise reach the log and the terminal)."""
        return printable(redact_query(WSGIHandler.format_request(self)), limit=4096)


def request_headers(environ: dict) -> dict[str, str]:
    """The request's headers from a WSGI environ, by lower-case name (for the handshake)."""
    return {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
            if key[:5] == "HTTP_"}


def request_scheme(environ: dict) -> str | None:
    """The scheme the client used, when known: https over TLS here, else what a proxy says
    in X-Forwarded-Proto (browsers cannot set it on a WebSocket handshake); None for a plain
    connection without it (it may come from a TLS-terminating proxy)."""
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https"):
        return forwarded
    return "https" if environ.get("wsgi.url_scheme") == "https" else None


def call_app(app: Callable, environ: dict, start_response: Callable) -> Any:
    """`app(environ, start_response)`, calling a Python-level ``__call__`` directly.

    Python 3.11 runs ``obj(...)`` through C when ``__call__`` is a method, and a WebSocket
    route sits inside that call for the connection's whole life: greenlet keeps a heap copy
    of each such C frame (~0.7 kB per idle connection for Flask's app object).
    """
    call = type(app).__call__
    if type(call) is FunctionType:
        return call(app, environ, start_response)
    return app(environ, start_response)


def _no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off: a message must not wait for the ACK of the one before.

    With it on, a push that follows another within a round trip is held back (up to the
    peer's delayed-ACK timer, 40 ms on Linux), and so is the tail of every large frame.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the peer is already gone; the first read or write will say so


class _RouteAnswer:
    """The route's start_response: the HTTP status it answered with, if any.

    A small object rather than a closure, since it stays referenced while the route runs.
    """

    __slots__ = ("status", "headers")

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list = []

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        self.status = status
        self.headers = headers
        return _ignore_body

    @property
    def refused_with(self) -> str | None:
        """The status of an answer other than 1xx/2xx: the route refused the WebSocket (a
        route that answered 1xx/2xx, or nothing, accepted it)."""
        status = self.status
        return None if status is None or status[:1] in ("1", "2") else status


def _ignore_body(data: bytes) -> None:
    """The write() callable handed to a WebSocket route: HTTP body bytes have no place."""
