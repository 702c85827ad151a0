"""The JS client's second line of recovery, in Chromium against two processes on Redis:
when offsets jump (its process missed more than history keeps), it says so ("gap"),
resubscribes with `since`, hears `history_lost`, and delivers what is left once, in order."""

from __future__ import annotations

import json
import threading
import time

import redis
from cluster.conftest import API_KEY, Cluster

AUTH = {"Authorization": f"Bearer {API_KEY}"}

WATCH = """async ([token]) => {
  const { WsClient } = await import("/static/wsapp.js");
  const seen = window.seen = { offsets: [], gaps: [], lost: [] };
  const client = window.client = new WsClient({ token });
  client.on("gap", (g) => seen.gaps.push(g));
  client.on("history_lost", (h) => seen.lost.push(h));
  client.connect();
  await new Promise((resolve) => {
    client.subscribe("room:lost", (data, frame) => seen.offsets.push(frame.offset));
    client.on("subscribed", resolve);
  });
}"""


def wait_until(page, check: str, timeout: float = 10.0) -> None:
    """Poll `check` (a JS function of no arguments) from here: the pages' CSP forbids the
    string evaluation Playwright's wait_for_function uses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(check):
        assert time.monotonic() < deadline, f"{check} not true in {timeout}s: " \
            f"{page.evaluate('() => window.seen')}"
        time.sleep(0.05)


def publish(server, n: int) -> int:
    status, _, raw = server.http("POST", "/api/publish", {"channel": "room:lost", "data": n},
                                 AUTH)
    assert status == 200, raw
    return json.loads(raw)["offset"]


def test_offsets_that_jump_past_history_are_reported_and_the_rest_delivered_in_order(
        browsers, tmp_path, redis_server):
    cluster = Cluster(tmp_path, redis_server)
    try:
        a, b = cluster.start(2, "--history-size", "5")
        page = browsers.page(f"http://127.0.0.1:{b.port}/echo")
        page.evaluate(WATCH, [b.mint("watcher")])
        assert [publish(a, n) for n in (1, 2)] == [1, 2]
        wait_until(page, "() => window.seen.offsets.length === 2")
        # Keep b's bus connection down while a publishes 12 more: b misses 3..14, and its
        # own catch-up can only bring the 5 that history keeps (10..14).
        admin = redis.Redis(port=redis_server.port)
        bus = f"wsapp-bus-{b.proc.pid}"
        done = threading.Event()

        def cut() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not done.is_set():
                for client in admin.client_list():
                    if client["name"] == bus:
                        admin.client_kill_filter(_id=client["id"])
                time.sleep(0.01)

        cutter = threading.Thread(target=cut)
        cutter.start()
        try:
            b.wait_for_log(r"Redis \S+ unreachable", 5)
            assert [publish(a, n) for n in range(3, 15)] == list(range(3, 15))
        finally:
            done.set()
            cutter.join(15)
        wait_until(page, "() => window.seen.lost.length === 1", 20)
        wait_until(page, "() => window.seen.offsets.length >= 7")
        time.sleep(0.5)  # nothing more may come
        seen = page.evaluate("() => window.seen")
        assert seen["offsets"] == [1, 2, 10, 11, 12, 13, 14]
        assert seen["gaps"] == [{"channel": "room:lost", "from": 3, "to": 9}]
        assert seen["lost"] == [{"channel": "room:lost", "first_offset": 10}]
    finally:
        cluster.stop_all()
