"""Feeds: pushes and publishes taken from a queue (docs/feeds.md).

`open_feed` is the only place a feed URL picks a source:

    redis://HOST:PORT/DB?stream=NAME&group=NAME     a Redis Stream, read by a consumer group
    amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME     a RabbitMQ queue (competing consumers)
    postgresql://USER@HOST:PORT/DB?table=NAME       an outbox table (LISTEN/NOTIFY + polling)

Options every source takes: `batch=N` (messages per round, default 200) and `timeout=SECONDS`
(the longest one call on the source may take before it counts as down, default 10). Each
source's own options are in its module. The client library is imported only when a feed of
its kind is configured; a missing one is a one-line error at start.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from wsapp.realtime.urls import redact

if TYPE_CHECKING:
    from wsapp.realtime.feeds.base import Feed

# scheme -> (source, the client module it imports, the extra that installs it)
SOURCES = {
    "redis": ("redis", "redis", "redis"),
    "rediss": ("redis", "redis", "redis"),
    "amqp": ("amqp", "amqp", "amqp"),
    "postgresql": ("postgresql", "psycopg", "postgres"),
    "postgres": ("postgresql", "psycopg", "postgres"),
}


def feed_urls(spec: str) -> list[str]:
    """The feed URLs of the `feed` setting (comma-separated; repeated flags are joined so)."""
    return [url.strip() for url in spec.split(",") if url.strip()]


def check_feed_url(url: str) -> None:
    """ValueError, in one line, saying what is wrong with a feed URL (checked at start)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SOURCES:
        raise ValueError(f"feed {redact(url)!r}: use redis://HOST:PORT/DB?stream=S&group=G, "
                         "amqp://USER:PASS@HOST:PORT/VHOST?queue=Q or "
                         "postgresql://USER@HOST:PORT/DB?table=T")
    _, module, extra = SOURCES[scheme]
    if find_spec(module) is None:
        raise ValueError(f"feed {redact(url)}: needs the {module} package "
                         f"(pip install 'wsapp[{extra}]')")
    _source_class(scheme).parse(url)  # raises for missing or bad options


def open_feed(url: str) -> Feed:
    """The Feed for `url` (not connected yet: the runner connects it)."""
    check_feed_url(url)
    return _source_class(url.partition("://")[0].lower())(url)


def _source_class(scheme: str) -> Any:
    source = SOURCES[scheme][0]
    if source == "redis":  # imported only when configured: each client is an optional extra
        from wsapp.realtime.feeds.redis_stream import RedisStreamFeed

        return RedisStreamFeed
    if source == "amqp":
        from wsapp.realtime.feeds.rabbitmq import AmqpFeed

        return AmqpFeed
    from wsapp.realtime.feeds.postgres import PostgresFeed

    return PostgresFeed
