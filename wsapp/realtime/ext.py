"""`Realtime`: wsapp's channels, presence, recovery and per-user push inside your Flask app.

    rt = Realtime(app)              # or rt = Realtime(); rt.init_app(app) in an app factory

Flask's rules for extensions: settings come from `app.config["WSAPP_*"]` (the names of the
environment variables); the state lives in one `app.extensions["wsapp"]` (state.py); only the
extension's own routes are registered — /ws, the HTTP API, /metrics, /healthz and the JS
client, under `WSAPP_URL_PREFIX` — with no app-wide hook; nothing runs before it is used; and
the Realtime object never keeps an app, so one of them can serve several apps.

Policy is the app's, through decorators (today's rules are the defaults, see policy.py):
`authenticate`, `on_subscribe(pattern)`, `on_publish(pattern)`, `rpc(name)`, `on_connect`,
`on_disconnect`, `on_error`. The server-side API (`publish`, `push`, `records`, `subscribe`,
`unsubscribe`, `close_channel`, `disconnect`, `presence`, `is_online`, `token`,
`revoke_tokens`, `demo`) works on the current app, or on the only app this Realtime serves; the
operations on connections reach every process through the broker.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context

from wsapp.realtime.auth import valid_user
from wsapp.realtime.engines.base import STATUSES
from wsapp.realtime.exceptions import Reject
from wsapp.realtime.hooks import Hooks
from wsapp.realtime.operations import CLOSE_DISCONNECT
from wsapp.realtime.options import RealtimeOptions
from wsapp.realtime.pipeline import now_ms
from wsapp.realtime.policy import (
    ChannelOptions,
    check_channel,
    check_pattern,
    parse_channels,
)
from wsapp.realtime.state import EXTENSION, AppState
from wsapp.websocket.options import env_name, from_mapping

F = TypeVar("F", bound=Callable[..., Any])


class Realtime:
    """The Flask extension: `Realtime(app)` or `Realtime()` + `init_app(app)`."""

    def __init__(self, app: Flask | None = None) -> None:
        self.hooks = Hooks()
        self.policy = self.hooks.policy
        # The states of the apps this serves, weakly: an app that goes takes its state along.
        self._states: weakref.WeakSet[AppState] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    # -- setup -------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read the app's WSAPP_* settings, keep the state in app.extensions["wsapp"], and
        register the extension's routes (under WSAPP_URL_PREFIX). ValueError names a bad
        setting."""
        if EXTENSION in app.extensions:
            raise RuntimeError(f"wsapp's Realtime is already set up on {app.name!r}")
        config = dict(app.config)
        channels = config.get(env_name("channels"))
        if isinstance(channels, dict):  # app.config may hold the channel options as a dict
            config[env_name("channels")] = json.dumps(channels)
        settings = from_mapping(RealtimeOptions, config)
        self.policy.channels.extend(parse_channels(settings.channels))
        state = AppState(self.hooks, settings)
        app.extensions[EXTENSION] = state
        self._states.add(state)
        from wsapp.realtime import api, views

        prefix = settings.url_prefix
        app.register_blueprint(views.bp, url_prefix=prefix or None)
        app.register_blueprint(api.bp, url_prefix=f"{prefix}/api")

    def state(self, app: Flask | None = None) -> AppState:
        """The state of `app`: given, else the current app, else the only app served."""
        if app is None and has_app_context() and EXTENSION in current_app.extensions:
            app = current_app
        if app is not None:
            state = app.extensions.get(EXTENSION)
            if state is None or state.hooks is not self.hooks:
                raise RuntimeError(f"this Realtime is not set up on the app {app.name!r}")
            return state
        states = list(self._states)
        if len(states) != 1:
            raise RuntimeError("no app context, and this Realtime serves "
                               f"{len(states)} apps: call it inside an app context")
        return states[0]

    @property
    def demo(self) -> bool:
        """Demo mode: the app has no WSAPP_API_KEY, so the HTTP API is open and anyone may
        mint a token for any user (pages can say so, or explain how to sign in)."""
        return self.state().demo

    @property
    def client_url(self) -> str:
        """Where the JS client (an ES module) is served, for a page's
        `<script type="module">import {WsClient} from "…"</script>`."""
        return self.state().client_url

    # -- policy: the app's hooks -------------------------------------------------------

    def authenticate(self, fn: F) -> F:
        """`@rt.authenticate`: name the user of a new /ws connection from the handshake's
        request (session, cookies, headers): return a user id, None for anonymous, or raise
        Reject. Replaces the default, the `?token=` JWT (`rt.identify(token)` checks one)."""
        self.hooks.authenticate = fn
        return fn

    def on_subscribe(self, pattern: str) -> Callable[[F], F]:
        """`@rt.on_subscribe("room:*")`: `fn(user, channel)`; False or Reject refuses."""
        return self._hook(self.policy.subscribe_hooks, pattern)

    def on_publish(self, pattern: str) -> Callable[[F], F]:
        """`@rt.on_publish("room:*")`: `fn(user, channel, data)` returns the data to publish
        (None: unchanged) or raises Reject. Publishing there by clients is allowed."""
        return self._hook(self.policy.publish_hooks, pattern)

    def _hook(self, hooks: list[tuple[str, Callable[..., Any]]],
              pattern: str) -> Callable[[F], F]:
        check_pattern(pattern)

        def register(fn: F) -> F:
            hooks.append((pattern, fn))
            return fn
        return register

    def rpc(self, name: str) -> Callable[[F], F]:
        """`@rt.rpc("start_job")`: `fn(user, params)` answers `client.rpc("start_job",
        params)` with its (JSON) return value; Reject answers with an error."""
        def register(fn: F) -> F:
            self.hooks.rpc[name] = fn
            return fn
        return register

    def on_connect(self, fn: F) -> F:
        """`@rt.on_connect`: `fn(user, conn)` once a connection is registered; Reject closes
        it (4403, or 4401 for "unauthorized")."""
        self.hooks.connect.append(fn)
        return fn

    def on_disconnect(self, fn: F) -> F:
        """`@rt.on_disconnect`: `fn(user, conn)` when a connection has gone."""
        self.hooks.disconnect.append(fn)
        return fn

    def on_error(self, kind: type[BaseException] | Callable[..., Any] = Exception) -> Any:
        """`@rt.on_error(MyError)` (or bare `@rt.on_error` for every exception): `fn(exc)`
        maps an exception raised in a hook or RPC to a Reject (or a (code, reason) pair);
        returning None leaves it an `internal_error` (logged with its traceback)."""
        if isinstance(kind, type) and issubclass(kind, BaseException):
            def register(fn: F) -> F:
                self.hooks.errors.append((kind, fn))
                return fn
            return register
        self.hooks.errors.append((Exception, kind))
        return kind

    def channel(self, pattern: str, **options: Any) -> None:
        """Options for the channels matching `pattern` (first match wins): publish,
        anonymous, presence, join_leave, history_size, history_ttl (policy.py)."""
        check_pattern(pattern)
        self.policy.channels.append((pattern, ChannelOptions(**options)))

    # -- the server-side API -----------------------------------------------------------

    def publish(self, channel: str, data: Any, persist: bool = True) -> dict[str, Any]:
        """Publish to `channel` on every process; {"msg", "offset"} (offset None: not
        stored, with persist=False or a channel without history)."""
        check_channel(channel)
        return self.state().hub.publish(channel, data, persist=persist)

    def push(self, user: str, data: Any, category: str | None = None,
             ttl: float | None = None) -> dict[str, Any]:
        """A personal message, kept until the user's client acks it (quotas may suppress
        it): {"msg", "status": delivered | stored | suppressed, "reason", "offset"}."""
        _check_user(user)
        return self.state().hub.push(user, data, category, ttl)

    def records(self, user: str, status: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
        """The push records of `user`, newest first (GET /api/users/<id>/messages): msg,
        status, reason, category, offset, created, delivered, acked, expires, attempts, data."""
        _check_user(user)
        if status is not None and status not in STATUSES:
            raise ValueError(f"status: one of {', '.join(STATUSES)}")
        if not 1 <= limit <= 1000:
            raise ValueError("limit: 1..1000")
        return self.state().hub.store.records(user, status, limit, now_ms())

    def subscribe(self, user: str, channel: str) -> None:
        """Subscribe every connection of `user`, on every process, to `channel`."""
        _check_user(user)
        check_channel(channel)
        self.state().hub.request_subscribe(user, channel)

    def unsubscribe(self, user: str, channel: str, reason: str = "") -> None:
        """Unsubscribe every connection of `user`, on every process, from `channel`."""
        _check_user(user)
        self.state().hub.request_unsubscribe(user, channel, reason)

    def close_channel(self, channel: str, reason: str = "") -> None:
        """Unsubscribe everybody from `channel`, on every process (they are told)."""
        check_channel(channel)
        self.state().hub.request_close_channel(channel, reason)

    def disconnect(self, user: str, code: int = CLOSE_DISCONNECT, reason: str = "") -> None:
        """Close every connection of `user`, on every process (4000-4499: the JS client does
        not reconnect by itself)."""
        _check_user(user)
        if not 4000 <= code <= 4999:
            raise ValueError("code: an application close code, 4000..4999")
        self.state().hub.request_disconnect(user, code, reason)

    def presence(self, channel: str) -> dict[str, Any]:
        """{"members": user ids, "count", "connections"} of `channel`, everywhere."""
        check_channel(channel)
        return self.state().hub.presence(channel)

    def is_online(self, user: str) -> bool:
        """Whether `user` has a connection on any process."""
        return self.state().hub.presence_engine.is_online(user)

    def stats(self) -> dict[str, int]:
        """This process's figures: connections, users (online anywhere), channels, messages
        and bytes in and out, slow consumers cut off."""
        return self.state().hub.stats()

    def cluster_stats(self, lease: float = 3.0) -> dict[str, int] | None:
        """stats() of every process summed, if this process is the one elected (for `lease`
        seconds) to report them; None when another one does. One process always reports."""
        return self.state().hub.cluster_stats(lease)

    def token(self, user: str, ttl: float | None = None, channels: tuple[str, ...] = ()) -> str:
        """A JWT for `user` (`channels`: grants to subscribe beyond the default rules)."""
        return self.state().tokens.mint(user, ttl, channels)[0]

    def identify(self, token: str | None) -> Any:
        """The Identity a token names (None without one); TokenError when it names nobody."""
        return self.state().identify(token)

    def revoke_tokens(self, user: str, disconnect: bool = True) -> None:
        """Refuse every token `user` holds now (new ones still work), on every process; and
        close the user's connections (4401) unless `disconnect` is False."""
        _check_user(user)
        self.state().revoke_tokens(user, disconnect)


def _check_user(user: Any) -> None:
    if not valid_user(user):
        raise ValueError(f"user {user!r}: 1-64 characters of A-Z a-z 0-9 _ . @ -")


__all__ = ["Realtime", "Reject"]
