"""A crash and restart of the server while pages are open: they come back by themselves."""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import expect

from e2e.pages import PHONE, live

# Records every value the header's connection state takes.
WATCH_STATE = """() => {
  const el = document.getElementById("conn-state");
  window.__states = [el.dataset.state];
  new MutationObserver(() => window.__states.push(el.dataset.state))
    .observe(el, { attributes: true, attributeFilter: ["data-state"] });
}"""


# Where the header and its status badge are (a layout jump moves them).
BOXES = """() => ["header.top", "#conn-state", ".latency"].map((sel) => {
  const r = document.querySelector(sel).getBoundingClientRect();
  return [r.x, r.y, r.width, r.height].map(Math.round);
})"""


def test_pages_reconnect_after_server_is_killed_and_restarted(own_server, browsers, shot) -> None:
    # The restarted server signs with another secret, so the old tokens are refused (4401)
    # and the client must mint new ones on its own, too.
    own_server.start("--secret", "before-the-crash-" * 3)
    tag = secrets.token_hex(3)
    room = f"crash-{tag}"
    chat = browsers.page(own_server.base + "/chat", width=PHONE)
    watcher = browsers.page(own_server.base + "/chat")
    echo = browsers.page(own_server.base + "/echo")
    for page, nick in ((chat, f"carol-{tag}"), (watcher, f"dave-{tag}")):
        live(page)
        page.fill("#nick-input", nick)
        page.click("#nick-form button")
        expect(page.locator("#whoami")).to_have_text(f"as {nick}")
        live(page)
        page.fill("#room-input", room)
        page.press("#room-input", "Enter")
        expect(page.locator("#presence li")).to_have_count(1 if page is chat else 2)
    live(echo)
    for page in (chat, watcher, echo):
        page.evaluate(WATCH_STATE)
    expect(chat.locator("#latency")).to_have_text(re.compile(r"\d ms$"))
    layout = chat.evaluate(BOXES)

    own_server.kill()
    for page in (chat, watcher, echo):
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting")
        # No stale round trip, and presence does not claim anyone (you) is online.
        expect(page.locator("#latency")).to_have_text("–")
    for page in (chat, watcher):
        expect(page.locator("#presence li")).to_have_count(0)
        expect(page.locator("#presence-state")).to_have_text("Offline: reconnecting…")
        expect(page.locator("#presence-count")).to_have_text("–")
    assert chat.evaluate(BOXES) == layout  # at 390 px too, the header did not move
    own_server.start("--secret", "after-the-crash-" * 3)
    for page in (chat, watcher, echo):
        live(page, timeout=20_000)
        states = page.evaluate("window.__states")
        assert states[0] == "live" and states[-1] == "live", states
        assert "reconnecting" in states, states
    # The old tokens really were refused on the way back (close code 4401 in the server log).
    assert "4401" in own_server.log()

    # The chat pages re-subscribed their room: a new message reaches the other one.
    chat.fill("#chat-input", "back after the crash")
    chat.press("#chat-input", "Enter")
    expect(watcher.locator("#messages li.msg", has_text="back after the crash")).to_have_count(1)
    expect(watcher.locator("#presence li")).to_have_count(2)

    # (the echo socket is the page's own, reconnecting on its own backoff)
    expect(echo.locator("#echo-state")).to_have_attribute("data-state", "live", timeout=20_000)
    echo.fill("#echo-input", "echo after the crash")
    echo.press("#echo-input", "Enter")
    expect(echo.locator("#echo-log li", has_text="← echo after the crash")).to_have_count(1)
    shot(chat, "chat-after-restart")
