"""The feeds' figures on /metrics, read from their runners at scrape time (never from the
sources: a scrape must not wait on a queue that is down)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from wsapp.realtime.feeds.runner import Feeds

COUNTERS = (
    ("processed", "Feed messages applied and acknowledged (duplicates and suppressed pushes "
                  "included)"),
    ("dead_lettered", "Feed messages moved to the dead letters as poison"),
    ("redelivered", "Feed messages the source handed out again (a consumer died, a retry)"),
    ("duplicates", "Feed messages whose idempotency key was already applied: no-ops"),
    ("suppressed", "Feed pushes suppressed by a quota (recorded like API pushes)"),
)


class FeedCollector:
    """wsapp_feed_* families, one sample per feed (label `feed`, e.g. redis:orders)."""

    def __init__(self, feeds: Feeds) -> None:
        self.feeds = feeds

    def collect(self) -> Iterator:
        health = self.feeds.health()
        up = GaugeMetricFamily("wsapp_feed_up", "1 while the feed's source answers and its "
                               "batches are stored, else 0", labels=["feed"])
        lag = GaugeMetricFamily("wsapp_feed_lag", "Messages waiting at the feed's source "
                                "(last sample; NaN when unknown)", labels=["feed"])
        for h in health:
            up.add_metric([h["feed"]], 1 if h["state"] == "up" else 0)
            lag.add_metric([h["feed"]], float("nan") if h["lag"] is None else h["lag"])
        yield up
        yield lag
        for name, doc in COUNTERS:
            family = CounterMetricFamily(f"wsapp_feed_{name}", doc, labels=["feed"])
            for h in health:
                family.add_metric([h["feed"]], h[name])
            yield family
