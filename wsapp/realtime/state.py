"""The real-time layer's state in one Flask app: `app.extensions["wsapp"]`.

One object per app, made by `Realtime.init_app`: the settings read from `app.config`, the hub
(engines opened on first use), the token authority, the metrics registry, and the Realtime
whose hooks and channel options apply. Views, the session and the server reach everything
through it; nothing is kept anywhere else in the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from flask import Flask, current_app, has_app_context

from wsapp.realtime.auth import Identity, TokenError, Tokens, load_secret
from wsapp.realtime.exceptions import Reject
from wsapp.realtime.feeds import feed_urls
from wsapp.realtime.feeds.metrics import FeedCollector
from wsapp.realtime.feeds.runner import Feeds, start_feeds
from wsapp.realtime.files import private_dir
from wsapp.realtime.hooks import Hooks
from wsapp.realtime.hub import Hub
from wsapp.realtime.metrics import make_registry
from wsapp.realtime.options import RealtimeOptions
from wsapp.realtime.urls import redact

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from wsapp.websocket.tracker import ConnectionTracker

log = logging.getLogger(__name__)

EXTENSION = "wsapp"


class AppState:
    """Everything the real-time layer keeps for one app."""

    def __init__(self, hooks: Hooks, settings: RealtimeOptions) -> None:
        self.hooks = hooks
        self.settings = settings
        self.hub = Hub(settings)
        self.hub.join_leave = hooks.policy.join_leave
        self.hub.history_of = lambda channel: hooks.policy.history(
            channel, settings.history_size, settings.history_ttl)
        self.tracker: ConnectionTracker | None = None  # the server's, once one runs the app
        self.feeds: Feeds | None = None  # started with the server (start())
        # Now, not at the first scrape: the fan-out histogram sees every publish.
        self.metrics: CollectorRegistry = make_registry(self.hub, lambda: self.tracker,
                                                        hooks.policy.named_openly)
        self.started = False

    @cached_property
    def tokens(self) -> Tokens:
        """Mints and checks JWTs (the HS256 secret is read or made on first use)."""
        s = self.settings
        secret = load_secret(s.secret, s.data_dir) if s.jwt_algorithm == "HS256" else b""
        return Tokens(algorithm=s.jwt_algorithm, secret=secret, public_key=s.jwt_public_key,
                      private_key=s.jwt_private_key, ttl=s.token_ttl, issuer=s.jwt_issuer,
                      audience=s.jwt_audience)


    @property
    def demo(self) -> bool:
        """Demo mode: no API key, so anyone may mint any user's token."""
        return not self.settings.api_key

    def start(self) -> None:
        """A server starts serving the app (not an import, not a request): open the engines
        and read the token keys now, so a bad store, broker or data_dir is a StartError
        naming its setting at start (not a 500 at first use), an unreachable Redis is logged
        at start and /healthz shows it; then start the feeds (--feed)."""
        if not self.started:
            s = self.settings
            if not s.store:  # the store is in data_dir: it is private (made so, or tightened)
                with _opening("data_dir", s.data_dir):
                    private_dir(s.data_dir)
            with _opening("store" if s.store else "data_dir", s.store_url()):
                self.hub.store  # noqa: B018 -- opens it (a SQLite file is made here)
            with _opening("broker", s.broker):
                self.hub.pipeline  # noqa: B018 -- starts the broker
                self.hub.presence_engine  # noqa: B018 -- shares the broker's bus
            with _opening("jwt_public_key" if s.jwt_algorithm != "HS256" else
                          "secret" if s.secret else "data_dir", "the token keys"):
                self.tokens  # noqa: B018 -- the HS256 secret is read or made in data_dir
            self.started = True
            self.feeds = start_feeds(self.hub, feed_urls(self.settings.feed),
                                     self.settings.max_publish_size)
            if self.feeds is not None:
                self.metrics.register(FeedCollector(self.feeds))

    def stop(self, timeout: float) -> None:
        """The server is stopping: finish (or leave for redelivery) what the feeds hold."""
        feeds, self.feeds = self.feeds, None
        if feeds is not None:
            feeds.stop(timeout)

    def identify(self, token: str | None) -> Identity | None:
        """The identity a token names (None: no token); TokenError when it names nobody
        or was revoked."""
        if not token:
            return None
        identity = self.tokens.verify(token)
        revoked = self.hub.store.revoked(identity.user)
        if revoked and (identity.issued is None or identity.issued * 1000 < revoked):
            raise TokenError("token revoked")
        return identity

    def authenticate(self) -> Identity | None:
        """Who opens this /ws connection: the app's `authenticate` hook, else the token in
        `?token=`. Runs in the handshake's request context; Reject refuses."""
        from flask import request

        hook = self.hooks.authenticate
        if hook is None:
            try:
                return self.identify(request.args.get("token"))
            except TokenError as exc:
                raise Reject(4401, f"unauthorized: {exc}") from None
        try:
            got = hook()
        except TokenError as exc:  # the hook checked a token with rt.identify()
            raise Reject(4401, f"unauthorized: {exc}") from None
        if got is None or isinstance(got, Identity):
            return got
        if not isinstance(got, str) or not got:
            raise TypeError(f"authenticate must return a user id, None or an Identity; "
                            f"got {got!r}")
        return Identity(got)

    @property
    def client_url(self) -> str:
        """Where the JS client is served (rt.client_url)."""
        return f"{self.settings.url_prefix}/wsapp.js"

    def revoke_tokens(self, user: str, disconnect: bool = True) -> None:
        """Refuse every token `user` holds now, on every process (the store keeps the time);
        close the user's connections (4401) unless `disconnect` is False."""
        # `iat` counts whole seconds: refuse the current one too, or a token issued earlier
        # in this second would pass (one minted later in it is refused: mint again a second on).
        self.hub.store.revoke(user, (int(time.time()) + 1) * 1000)
        if disconnect:
            self.hub.request_disconnect(user, 4401, "token revoked")


class StartError(ValueError):
    """A setting that cannot work, found when the server opens what it names at start; the
    message starts with the setting's name (`store: ...`), as settings errors do."""


@contextmanager
def _opening(setting: str, what: str) -> Iterator[None]:
    """Turn any failure to open `what` into a StartError naming `setting`: a bad path or URL
    is the operator's to fix, and deserves one line, not a traceback."""
    try:
        yield
    except StartError:
        raise
    except Exception as exc:
        raise StartError(f"{setting}: cannot open {redact(what)}: "
                         f"{type(exc).__name__}: {exc}") from exc


def state_of(app: Flask | None = None) -> AppState:
    """The real-time state of `app` (default: the current app); a clear error when the app
    has no Realtime."""
    app = app if app is not None else (current_app if has_app_context() else None)
    if app is None:
        raise RuntimeError("no Flask app: call inside an app context, or pass app=")
    state = app.extensions.get(EXTENSION)
    if state is None:
        raise RuntimeError(f"the Flask app {app.name!r} has no wsapp Realtime: "
                           "add `Realtime(app)` (or rt.init_app(app))")
    return state


def get_hub(app: Flask | None = None) -> Hub:
    """The hub of `app` (default: the current app): what `wsapp.hub.get_hub` always gave."""
    return state_of(app).hub
