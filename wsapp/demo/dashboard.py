"""The dashboard publisher: once a second, the hub's figures go to `sys:dashboard`.

One greenlet per app, started by the first subscription to sys:dashboard. It holds the
app only weakly, so an app that is dropped takes its publisher with it. With a Redis broker
every process shares its counters and one of them (elected by the hub's cluster_stats)
publishes the sums, so subscribers see one tick a second with the cluster's figures.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from typing import Any

import gevent
from flask import Flask, current_app

from wsapp.demo import demo_state
from wsapp.realtime.ext import Realtime

CHANNEL = "sys:dashboard"
HISTORY = 60  # seconds of messages/s kept for the sparkline

log = logging.getLogger("wsapp.demo.dashboard")


class Rates:
    """Per-second rates from the hub's cumulative counters, and a short history of them."""

    COUNTERS = ("messages_in", "messages_out", "bytes_in", "bytes_out")

    def __init__(self, history: int = HISTORY) -> None:
        self.last: dict[str, float] | None = None
        self.last_at = 0.0
        self.history: deque[float] = deque(maxlen=history)

    def update(self, stats: dict[str, Any], now: float) -> dict[str, float]:
        """Rates since the previous call (zeros on the first); appends messages/s to history."""
        current = {k: float(stats.get(k, 0) or 0) for k in self.COUNTERS}
        rates = dict.fromkeys(self.COUNTERS, 0.0)
        if self.last is not None and now > self.last_at:
            dt = now - self.last_at
            # max(0, …): a counter that went backwards (a reset) is not negative traffic
            rates = {k: max(0.0, current[k] - self.last[k]) / dt for k in self.COUNTERS}
        self.last, self.last_at = current, now
        self.history.append(round(rates["messages_in"] + rates["messages_out"], 1))
        return rates


def snapshot(stats: dict[str, Any], rates: dict[str, float], history: list[float],
             now_ms: int) -> dict[str, Any]:
    """The JSON pushed to the dashboard page each second."""
    return {
        "time": now_ms,
        "users": int(stats.get("users", 0) or 0),
        "connections": int(stats.get("connections", 0) or 0),
        "channels": int(stats.get("channels", 0) or 0),
        "messages_in": int(stats.get("messages_in", 0) or 0),
        "messages_out": int(stats.get("messages_out", 0) or 0),
        "in_per_s": round(rates["messages_in"], 1),
        "out_per_s": round(rates["messages_out"], 1),
        "msgs_per_s": round(rates["messages_in"] + rates["messages_out"], 1),
        "bytes_in_per_s": round(rates["bytes_in"]),
        "bytes_out_per_s": round(rates["bytes_out"]),
        "history": history,
    }


def _run(app_ref: weakref.ref, rt: Realtime, interval: float) -> None:
    rates = Rates()
    failures = 0
    while True:
        # Sleep to the next whole second so the page's clock ticks evenly.
        gevent.sleep(interval - (time.time() % interval))
        app = app_ref()
        if app is None:
            return
        try:
            with app.app_context():
                stats = rt.cluster_stats()  # several processes: one publishes the sums
                if stats is None:
                    continue
                r = rates.update(stats, time.monotonic())
                rt.publish(CHANNEL, snapshot(stats, r, list(rates.history),
                                             int(time.time() * 1000)),
                           persist=False)  # a live figure: nobody replays yesterday's ticks
            failures = 0
        except Exception:
            # Keep publishing through transient faults, but do not flood the log.
            failures += 1
            if failures == 1 or failures % 60 == 0:
                log.exception("dashboard publish failed (%d in a row)", failures)
        del app


def attach(rt: Realtime, interval: float = 1.0) -> None:
    """Publish the figures from the first subscription to sys:dashboard on (no greenlet
    until someone watches)."""

    @rt.on_subscribe(CHANNEL)
    def _start_publishing(user: str | None, channel: str) -> bool:
        app = current_app._get_current_object()  # type: ignore[attr-defined]  # the real app
        start(app, rt, interval)  # of this request: the greenlet holds it weakly
        return True


def start(app: Flask, rt: Realtime, interval: float = 1.0) -> gevent.Greenlet:
    """Start the app's publisher once; later calls return the running greenlet."""
    demo = demo_state(app)
    running = demo.get("dashboard")
    if running is not None and not running.dead:
        return running
    greenlet = demo["dashboard"] = gevent.spawn(_run, weakref.ref(app), rt, interval)
    return greenlet
