"""Echo, index and dashboard pages in a real browser against the real server."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def live(page) -> None:
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")


def test_index_lists_pages_and_shows_connection(web, browsers, shot) -> None:
    page = browsers.page(web.base + "/")
    live(page)
    for name in ("Echo", "Dashboard", "Task progress", "Chat"):
        expect(page.locator("main .pages a", has_text=name)).to_be_visible()
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
    shot(page, "index")


def test_echo_round_trip_and_latency(web, browsers, shot) -> None:
    page = browsers.page(web.base + "/echo")
    live(page)
    page.fill("#echo-input", "hello, echo <b>bold?</b>")
    page.press("#echo-input", "Enter")
    expect(page.locator("#echo-log li", has_text="← hello, echo <b>bold?</b>")).to_have_count(1)
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
    shot(page, "echo")


def _int(page, selector: str) -> int:
    text = page.text_content(selector) or ""
    return int(text) if text.isdigit() else -1


def test_dashboard_ticks_and_counts_a_second_page(web, browsers, shot) -> None:
    page = browsers.page(web.base + "/dashboard")
    live(page)
    clock = page.locator("#clock")
    expect(clock).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
    first = clock.text_content()
    expect(clock).not_to_have_text(first, timeout=5000)  # it ticks on its own
    expect(page.locator("#online")).to_have_text(re.compile(r"^[1-9]\d*$"))

    # Connections left over from earlier tests may still be closing: start from a count
    # that held for two ticks.
    before = -2
    for _ in range(10):
        now = _int(page, "#online")
        if now == before:
            break
        before = now
        page.wait_for_timeout(1100)
    connections = _int(page, "#connections")

    other = browsers.page(web.base + "/dashboard")  # a new context: another guest user
    live(other)
    page.wait_for_function(
        "([u, c]) => +document.getElementById('online').textContent > u"
        " && +document.getElementById('connections').textContent > c",
        arg=[before, connections], timeout=6000)
    expect(page.locator("#rate")).to_have_text(re.compile(r"^\d"))
    expect(page.locator("#sparkline polyline")).to_have_count(1)
    shot(page, "dashboard")
