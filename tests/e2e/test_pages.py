"""Every demo page in a real browser against the real server, at desktop width and at 390 px:
one header, demo mode announced (or how to sign in explained), nothing scrolling sideways;
and the index, echo and dashboard pages' own behaviour."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from e2e.pages import PAGES, PHONE, WIDTHS, assert_no_sideways_scroll, live, mint, sign_in

RTT = re.compile(r"^\d+(\.\d)? ms$")


def header(page) -> dict:
    """Where the header and its status badge sit (a layout jump moves them)."""
    return page.evaluate("""() => {
      const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                             return [Math.round(r.x), Math.round(r.y), Math.round(r.width),
                                     Math.round(r.height)]; };
      return { header: box("header.top"), state: box("#conn-state"), rtt: box(".latency") };
    }""")


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_has_the_same_header_and_announces_demo_mode(web, browsers, shot, width):
    for path in PAGES:
        page = browsers.page(web.base + path, width=width)
        before = header(page)  # as first painted, before the connection is up
        live(page)
        expect(page.locator("#whoami")).to_have_text(re.compile(r"^as guest-[0-9a-f]{6}$"))
        expect(page.locator("#latency")).to_have_text(RTT)
        assert header(page) == before, f"{path}: the header moved when the page went live"
        expect(page.locator("#mode")).to_contain_text("Demo mode")
        expect(page.locator("#mode")).to_contain_text("anyone may act as any user")
        expect(page.locator("header nav a[aria-current=page]")).to_have_count(
            0 if path == "/" else 1)
        assert_no_sideways_scroll(page)
        shot(page, f"{(path.strip('/') or 'index')}-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_with_an_api_key_every_page_explains_how_to_sign_in(own_server, browsers, width):
    key = "pages-key"
    base = own_server.start("--api-key", key).base
    page = browsers.page(base + "/", width=width)
    for path in PAGES:
        page.goto(base + path)
        live(page)
        expect(page.locator("#whoami")).to_have_text("not signed in")
        mode = page.locator("#mode")
        expect(mode).not_to_contain_text("Demo mode")
        expect(mode).to_contain_text("Sign in to use these pages")
        expect(mode.locator("pre")).to_contain_text(f"curl -s -X POST {base}/api/tokens")
        expect(page.locator("#signin-token")).to_be_visible()
        assert_no_sideways_scroll(page)
    # The actions say what to do before anyone tries them, instead of failing on first use.
    page.goto(base + "/tasks")
    expect(page.locator("#task-error")).to_contain_text("Sign in above to start jobs")
    expect(page.locator("#task-start")).to_be_disabled()
    page.goto(base + "/chat")
    expect(page.locator("#chat-error")).to_contain_text("Sign in above to chat")
    expect(page.locator("#chat-send")).to_be_disabled()
    expect(page.locator("#presence-state")).to_have_text("Sign in to see who is here.")
    expect(page.locator("#nick-form")).to_be_hidden()  # your name is your token's

    # Signed in with a pasted token: this tab acts as that user on every page.
    page.fill("#signin-token", "not-a-token")
    page.click("#signin-form button")
    expect(page.locator("#signin-error")).to_contain_text("That token was refused")
    sign_in(page, mint(base, key, "ann"), "ann")
    expect(page.locator("#who-note")).to_have_text(
        "You chat as ann, the user your token names.")
    expect(page.locator("#presence li.me")).to_have_text("annyou")
    expect(page.locator("#chat-send")).to_be_enabled()
    page.goto(base + "/tasks")
    live(page)
    expect(page.locator("#whoami")).to_have_text("as ann")
    expect(page.locator("#signin-help")).to_be_hidden()
    page.fill("#task-steps", "3")
    page.fill("#task-step-seconds", "0.1")
    page.click("#task-start")
    expect(page.locator("#jobs li.job")).to_have_attribute("data-state", "done")
    page.click("#signout")
    expect(page.locator("#whoami")).to_have_text("not signed in")
    expect(page.locator("#signin-token")).to_be_visible()


def test_index_lists_pages_and_shows_connection(web, browsers) -> None:
    page = browsers.page(web.base + "/")
    live(page)
    for name in ("Echo", "Dashboard", "Task progress", "Chat", "Push console", "Inbox"):
        expect(page.locator("main .pages a", has_text=name)).to_be_visible()
    expect(page.locator("#latency")).to_have_text(RTT)


@pytest.mark.parametrize("width", WIDTHS)
def test_echo_lines_in_order_each_with_its_round_trip(web, browsers, width) -> None:
    page = browsers.page(web.base + "/echo", width=width)
    live(page)
    expect(page.locator("#echo-state")).to_have_text("live")
    sent = ["first", "hello, echo <b>bold?</b>", "third " + "long " * 40]
    for text in sent:
        page.fill("#echo-input", text)
        page.press("#echo-input", "Enter")
    lines = page.locator("#echo-log li")
    expect(lines).to_have_count(3)
    expect(page.locator("#echo-log li.echoed")).to_have_count(3)
    for i, text in enumerate(sent):  # oldest first: each echo on its message's line
        line = lines.nth(i)
        expect(line.locator(".out")).to_have_text(f"→ {text}")
        expect(line.locator(".in")).to_have_text(f"← {text}")
        expect(line.locator(".rtt")).to_have_text(RTT)
    assert page.locator("#echo-log b").count() == 0  # text, never HTML
    assert page.evaluate("document.getElementById('echo-log').start") == 1
    assert_no_sideways_scroll(page)


def _int(page, selector: str) -> int:
    text = page.text_content(selector) or ""
    return int(text) if text.isdigit() else -1


def test_dashboard_ticks_and_counts_a_second_page(web, browsers) -> None:
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

    other = browsers.page(web.base + "/dashboard", width=PHONE)  # another guest user
    live(other)
    page.wait_for_function(
        "([u, c]) => +document.getElementById('online').textContent > u"
        " && +document.getElementById('connections').textContent > c",
        arg=[before, connections], timeout=6000)
    expect(page.locator("#rate")).to_have_text(re.compile(r"^\d"))
    expect(page.locator("#sparkline polyline")).to_have_count(1)
    expect(other.locator("#clock")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
    assert_no_sideways_scroll(other)


def test_pages_follow_the_extensions_url_prefix(own_server, browsers) -> None:
    """The pages find the JS client, /ws and /api wherever the extension is mounted: they
    import it through the import map rendered from rt.client_url."""
    base = own_server.start("--url-prefix", "/rt").base
    chat = browsers.page(base + "/chat")
    live(chat)
    requested = []
    console = browsers.page(base + "/console")
    console.on("request", lambda req: requested.append(req.url))
    live(console)
    console.fill("#text-input", "through /rt/api")
    console.click("#send")
    expect(console.locator("#sent-rows tr")).to_have_attribute("data-status", "published")
    assert f"{base}/rt/api/publish" in requested
    dashboard = browsers.page(base + "/dashboard")
    expect(dashboard.locator("#clock")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
