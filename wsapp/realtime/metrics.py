"""Prometheus figures: read from the hub, tracker and traffic counters at scrape time.

Counting happens in plain ints on the hot paths; this collector turns them into metric
families only when /metrics is scraped. Per-channel figures are bounded: the busiest
channels by name, the rest summed as channel="other"; channels whose name is a secret
(user:<id>, those an on_subscribe hook guards) are never named, summed as "private".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from wsapp.realtime.hub import Hub
from wsapp.websocket.traffic import TRAFFIC

TOP_CHANNELS = 20


class WsappCollector:
    """A custom collector over one hub (and the process-wide traffic counters)."""

    def __init__(self, hub: Hub, tracker_of: Callable[[], Any],
                 named_openly: Callable[[str], bool] = lambda channel: True) -> None:
        self.hub = hub
        self._tracker_of = tracker_of  # the server's tracker, once a server runs the app
        # Channel names are labels only where they are no secret: a scrape is stored and
        # shown far from the app (Prometheus, dashboards), and user:<id> or a private board's
        # unguessable name would be read there.
        self._named_openly = named_openly

    def collect(self) -> Iterator:
        hub = self.hub
        tracker = self._tracker_of()
        g = GaugeMetricFamily("wsapp_connections", "Open WebSocket connections",
                              labels=["route"])
        g.add_metric(["/ws"], len(hub.clients))
        g.add_metric(["all"], len(tracker) if tracker is not None else len(hub.clients))
        yield g
        yield GaugeMetricFamily("wsapp_users_online", "Distinct users with an open /ws",
                                value=len(hub.users))
        for name, doc, value in (
            ("wsapp_messages_in", "WebSocket messages received", TRAFFIC.messages_in),
            ("wsapp_messages_out", "WebSocket messages sent", TRAFFIC.messages_out),
            ("wsapp_bytes_in", "Payload bytes received", TRAFFIC.bytes_in),
            ("wsapp_bytes_out", "Payload bytes sent", TRAFFIC.bytes_out),
            ("wsapp_slow_consumer_drops", "Connections cut off for not reading fast enough",
             TRAFFIC.slow_consumer_drops),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        closes = CounterMetricFamily("wsapp_closes", "Closed connections by close code",
                                     labels=["code"])
        for code, n in sorted(TRAFFIC.closes.items()):
            closes.add_metric([str(code)], n)
        yield closes
        subs = GaugeMetricFamily("wsapp_channel_subscribers", "Subscribers per channel "
                                 f"(top {TOP_CHANNELS} of those any user may join; the rest as "
                                 "'other', personal and hook-guarded ones as 'private')",
                                 labels=["channel"])
        named, private = [], 0
        for channel, members in hub.channels.items():
            if self._named_openly(channel):
                named.append((channel, len(members)))
            else:
                private += len(members)
        named.sort(key=lambda kv: -kv[1])
        for channel, count in named[:TOP_CHANNELS]:
            subs.add_metric([channel], count)
        subs.add_metric(["other"], sum(count for _, count in named[TOP_CHANNELS:]))
        subs.add_metric(["private"], private)
        yield subs
        yield GaugeMetricFamily("wsapp_channels", "Channels with at least one subscriber",
                                value=len(hub.channels))


def make_registry(hub: Hub, tracker_of: Callable[[], Any],
                  named_openly: Callable[[str], bool] = lambda channel: True
                  ) -> CollectorRegistry:
    """A registry for one app: our collector plus the fan-out latency histogram
    (`named_openly(channel)`: whether a channel's name may be a label)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WsappCollector(hub, tracker_of, named_openly))
    fanout = Histogram("wsapp_fanout_seconds", "Time to hand one message to every recipient",
                       buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1, 0.25, 0.5, 1.0), registry=registry)
    hub.on_fanout = fanout.observe
    return registry
