"""Who may do what on which channel: channel options by pattern, and the app's hooks.

A channel is `namespace:name`. Each channel's options come from the first pattern (fnmatch)
that matches it — the app's own (`WSAPP_CHANNELS`, `rt.channel()`), then the defaults, which
keep today's rules:

    room:*   any signed-in user may subscribe and publish
    sys:*    anyone may subscribe (anonymous too); only the server publishes
    user:*   personal: only that user may subscribe; only the server publishes (pushes)

A namespace with no options and no hook for it is unknown (`bad_channel`). A token may grant
channels (its `channels` claim, patterns too) that its bearer may subscribe to whatever the
options say. Then the app's hooks decide: every `on_subscribe` hook whose pattern matches may
refuse (return False, or raise Reject); every matching `on_publish` hook may refuse or
replace the data. `user:<id>` stays personal whatever a hook says, unless a token grants it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from fnmatch import fnmatchcase
from typing import Any

from wsapp.realtime.exceptions import Reject, RequestError

# namespace:name, matched whole (a trailing newline is not a name): 1-128 characters.
CHANNEL_RE = re.compile(r"(?=.{1,128}\Z)([a-z][a-z0-9_-]{0,31}):[A-Za-z0-9_.:@-]+")


@dataclass(frozen=True)
class ChannelOptions:
    """What clients may do on the channels of one pattern."""

    publish: bool = False  # clients may publish (the server always may)
    anonymous: bool = False  # connections without a user may subscribe (and read presence)
    presence: bool = True  # `presence` requests are answered
    join_leave: bool = True  # subscribers are told when a user joins or leaves
    history_size: int | None = None  # messages kept for recovery; None: --history-size
    history_ttl: float | None = None  # seconds they are kept; None: --history-ttl
    personal: bool = False  # user:<id>: only that user (the user namespace's rule)

    def __post_init__(self) -> None:
        if self.history_size is not None and (not isinstance(self.history_size, int)
                                              or self.history_size < 0):
            raise ValueError("history_size must be a whole number >= 0 (0: not stored)")
        if self.history_ttl is not None and (not isinstance(self.history_ttl, (int, float))
                                             or not 0 < self.history_ttl < float("inf")):
            raise ValueError("history_ttl must be seconds > 0")


DEFAULTS: tuple[tuple[str, ChannelOptions], ...] = (
    ("room:*", ChannelOptions(publish=True)),
    ("sys:*", ChannelOptions(anonymous=True)),
    ("user:*", ChannelOptions(personal=True)),
)


def parse_channels(spec: str | dict[str, Any]) -> list[tuple[str, ChannelOptions]]:
    """`{"pattern": {option: value}}` (a dict, or its JSON) as (pattern, options) pairs;
    ValueError naming what is wrong."""
    if not spec:
        return []
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise ValueError(f"channels: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ValueError("channels: must be a JSON object of pattern -> options")
    known = {f.name for f in fields(ChannelOptions)} - {"personal"}
    out = []
    for pattern, options in spec.items():
        if not isinstance(options, dict) or not set(options) <= known:
            raise ValueError(f"channels: {pattern!r} needs an object with some of "
                             f"{', '.join(sorted(known))}")
        if ":" not in pattern:
            raise ValueError(f"channels: {pattern!r} is not a namespace:name pattern")
        try:
            out.append((pattern, ChannelOptions(**options)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"channels: {pattern!r}: {exc}") from None
    return out


def check_channel(name: Any, request_id: Any = None) -> str:
    """The channel's namespace, or RequestError bad_channel."""
    match = CHANNEL_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise RequestError("bad_channel", f"bad channel name {name!r}: use namespace:name "
                           "(e.g. room:lobby), 1-128 of A-Z a-z 0-9 _ . : @ -", request_id)
    return match.group(1)


def check_pattern(pattern: str) -> None:
    """ValueError unless `pattern` is a namespace:name fnmatch pattern."""
    try:
        check_channel(pattern.replace("*", "x").replace("?", "x").replace("[", "x")
                      .replace("]", "x"))
    except RequestError as exc:
        raise ValueError(f"channel pattern {pattern!r}: {exc.reason}") from None


Hook = Callable[..., Any]


class Policy:
    """Channel options and hooks of one Realtime; answers "may this caller do that?"."""

    def __init__(self) -> None:
        self.channels: list[tuple[str, ChannelOptions]] = []  # the app's, first match wins
        self.subscribe_hooks: list[tuple[str, Hook]] = []
        self.publish_hooks: list[tuple[str, Hook]] = []

    def options(self, channel: str, request_id: Any = None) -> ChannelOptions:
        """The options of `channel`; RequestError for a bad name or an unknown namespace."""
        check_channel(channel, request_id)
        for pattern, options in (*self.channels, *DEFAULTS):
            if fnmatchcase(channel, pattern):
                return options
        if _matching(self.subscribe_hooks, channel) or _matching(self.publish_hooks, channel):
            return ChannelOptions()  # the app handles it in its hooks
        raise RequestError("bad_channel", f"no channel is configured for {channel!r} (its "
                           "namespace is unknown)", request_id)

    def may_read(self, user: str | None, grants: Iterable[str], channel: str,
                 request_id: Any = None) -> ChannelOptions:
        """Check a subscribe (or presence read) without the hooks; the channel's options."""
        options = self.options(channel, request_id)
        if any(fnmatchcase(channel, grant) for grant in grants):
            return options
        if options.personal and channel != f"user:{user}":
            raise RequestError("forbidden", f"only that user may subscribe to {channel}",
                               request_id)
        if user is None and not options.anonymous:
            raise RequestError("unauthorized", f"{channel} needs a signed-in user (connect "
                               "with ?token=…)", request_id)
        return options

    def named_openly(self, channel: str) -> bool:
        """Whether any signed-in user may subscribe to `channel` without a hook's say: its
        name is then no secret (unlike user:<id>, or a channel an on_subscribe hook guards,
        whose unguessable name may be all that keeps it private), so figures may show it."""
        try:
            options = self.options(channel)
        except RequestError:
            return False
        return not options.personal and not _matching(self.subscribe_hooks, channel)

    def may_subscribe(self, user: str | None, grants: Iterable[str], channel: str,
                      request_id: Any = None) -> ChannelOptions:
        """may_read, then every matching on_subscribe hook; RequestError or Reject."""
        options = self.may_read(user, grants, channel, request_id)
        for hook in _matching(self.subscribe_hooks, channel):
            if hook(user, channel) is False:
                raise Reject("forbidden", f"not allowed to subscribe to {channel}")
        return options

    def may_publish(self, user: str | None, channel: str, data: Any,
                    request_id: Any = None) -> tuple[ChannelOptions, Any]:
        """Check a client's publish; the options and the data to publish (hooks may replace
        it: a hook returning None keeps it)."""
        options = self.options(channel, request_id)
        if user is None:
            raise RequestError("unauthorized", "publishing needs a signed-in user", request_id)
        hooks = _matching(self.publish_hooks, channel)
        if not options.publish and not hooks:  # a publish hook says clients publish there
            raise RequestError("forbidden", f"clients may not publish to {channel}", request_id)
        for hook in hooks:
            result = hook(user, channel, data)
            if result is not None:
                data = result
        return options, data

    def history(self, channel: str, default_size: int,
                default_ttl: float) -> tuple[int, float] | None:
        """(messages, seconds) of history `channel` keeps when its options say; None: the
        settings' own (so the store need not be told)."""
        try:
            options = self.options(channel)
        except RequestError:
            return None
        if options.history_size is None and options.history_ttl is None:
            return None
        size = default_size if options.history_size is None else options.history_size
        return size, default_ttl if options.history_ttl is None else options.history_ttl

    def join_leave(self, channel: str) -> bool:
        """Whether subscribers of `channel` are told of joins and leaves."""
        try:
            return self.options(channel).join_leave
        except RequestError:
            return True


def _matching(hooks: list[tuple[str, Hook]], channel: str) -> list[Hook]:
    return [hook for pattern, hook in hooks if fnmatchcase(channel, pattern)]
