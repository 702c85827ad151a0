"""Push console and inbox: an operator in one browser, users in others, statuses live; the
inbox lists what a user was sent on open; the console's table on a phone."""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest
from playwright.sync_api import expect

from e2e.pages import PHONE, WIDTHS, assert_no_sideways_scroll, live, mint, sign_in

XSS = "<img src=x onerror=alert(1)> hi zoe <script>alert(2)</script>"
INJECTED = "#inbox img, #inbox script, #sent-rows img, #sent-rows script"


def pick(console, label: str) -> None:
    """Choose a target the way a user does: click its label in the segmented control."""
    console.locator(".segmented label", has_text=label).click()


def send(console, text: str, user: str | None = None, room: str | None = None,
         category: str = "") -> None:
    """Fill the console's form and send; wait until the form accepted it."""
    pick(console, "A user" if user else "A room" if room else "Everyone")
    if user:
        console.fill("#user-input", user)
        console.fill("#category-input", category)
    if room:
        console.fill("#room-input", room)
    console.fill("#text-input", text)
    console.click("#send")
    expect(console.locator("#text-input")).to_have_value("")


def row(console, text: str):
    return console.locator("#sent-rows tr", has_text=text)


def test_console_follows_pushes_to_browser_users(own_server, browsers, shot) -> None:
    base = own_server.start("--quota", "promo=2/day").base
    console = browsers.page(base + "/console", width=1280, height=860)
    zoe = browsers.page(base + "/inbox?user=zoe", width=900, height=700)
    live(console)
    live(zoe)
    expect(zoe.locator("#whoami")).to_have_text("as zoe")

    # Online user: the API says delivered, then zoe's page acks it once it is shown.
    send(console, XSS, user="zoe")
    pushed = row(console, XSS)
    expect(pushed).to_have_attribute("data-status", "acked")
    assert pushed.get_attribute("data-trail") == "delivered acked"
    expect(pushed.locator(".delivered time")).to_have_count(1)
    expect(pushed.locator(".acked time")).to_have_count(1)
    got = zoe.locator("#inbox li.personal")
    expect(got).to_have_count(1)
    expect(got.locator(".text")).to_have_text(XSS)
    expect(got).to_have_attribute("data-state", "acked")
    expect(pushed.locator(".text")).to_have_text(XSS)

    # Everyone: room:all, which every inbox listens to; not tracked per user.
    send(console, "all hands at noon")
    expect(zoe.locator("#inbox li.everyone", has_text="all hands at noon")).to_have_count(1)
    expect(row(console, "all hands at noon")).to_have_attribute("data-status", "published")
    send(console, "room news", room="#news")  # a Chat room: nobody is in it now
    expect(row(console, "room news").locator(".detail")).to_have_text(
        "offset 1 · 0 listening now")
    expect(zoe.locator("#inbox li", has_text="room news")).to_have_count(0)

    # Offline user: stored (pending) until yan opens an inbox, then delivered and acked.
    send(console, "welcome back, yan", user="yan")
    waiting = row(console, "welcome back, yan")
    expect(waiting).to_have_attribute("data-status", "pending")
    expect(waiting.locator(".detail")).to_contain_text("waits for yan")
    console.wait_for_timeout(1500)  # a poll or so: still nobody to deliver it to
    expect(waiting).to_have_attribute("data-status", "pending")
    yan = browsers.page(base + "/inbox?user=yan", width=900, height=500)
    expect(yan.locator("#inbox li.personal", has_text="welcome back, yan")).to_have_attribute(
        "data-state", "acked")
    expect(waiting).to_have_attribute("data-status", "acked")
    trail = (waiting.get_attribute("data-trail") or "").split()
    assert trail[0] == "pending" and trail[-1] == "acked", trail
    expect(waiting.locator(".delivered time")).to_have_count(1)

    # Fatigue control: promo is capped at 2 a day, so the third is suppressed at once.
    for n in (1, 2, 3):
        send(console, f"promo {n}", user="zoe", category="promo")
    for n in (1, 2):
        expect(row(console, f"promo {n}")).to_have_attribute("data-status", "acked")
    third = row(console, "promo 3")
    expect(third).to_have_attribute("data-status", "suppressed")
    expect(third.locator(".detail")).to_contain_text("quota promo=2/day reached")
    expect(zoe.locator("#inbox li.personal")).to_have_count(3)
    expect(zoe.locator("#inbox li.personal .tag")).to_have_count(2)
    expect(console.locator("#watching")).to_have_text("")  # nothing left open: polling stopped

    for page in (console, zoe):
        assert page.locator(INJECTED).count() == 0
    console.wait_for_timeout(200)  # give any injected handler a chance to fire
    assert browsers.dialogs == []
    shot(console, "console")
    shot(zoe, "inbox")


def test_console_and_inbox_with_an_api_key(own_server, browsers) -> None:
    key = "console-test-key"
    base = own_server.start("--api-key", key).base
    console = browsers.page(base + "/console")
    expect(console.locator("#key-field")).to_be_visible()
    pick(console, "A user")
    console.fill("#user-input", "ann")
    console.fill("#text-input", "keyed hello")
    console.click("#send")
    expect(console.locator("#console-error")).to_contain_text("API key")
    console.fill("#key-input", "wrong")
    console.click("#send")
    expect(console.locator("#console-error")).to_contain_text("refused")
    console.fill("#key-input", key)
    console.click("#send")
    sent = row(console, "keyed hello")
    expect(sent).to_have_attribute("data-status", "pending")

    # Without demo mode the inbox cannot mint a token: it says how to sign in.
    ann = browsers.page(base + "/inbox")
    live(ann)
    expect(ann.locator("#inbox-error")).to_contain_text("Sign in above to open your inbox")
    expect(ann.locator("#user-form")).to_have_count(0)  # your inbox is your token's user's
    sign_in(ann, mint(base, key, "ann"), "ann")
    expect(ann.locator("#inbox-user")).to_have_text("ann")
    expect(ann.locator("#inbox li.personal", has_text="keyed hello")).to_have_attribute(
        "data-state", "acked")
    expect(sent).to_have_attribute("data-status", "acked")


def api(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_inbox_lists_what_the_user_was_sent_on_open_and_after_reload(
        web, browsers, shot, width) -> None:
    user = f"ivy{secrets.token_hex(3)}"
    # Acked while a first inbox was open: never delivered again, yet still the user's.
    first = browsers.page(f"{web.base}/inbox?user={user}")
    live(first)
    seen = api(web.base, "/api/push", {"user": user, "data": {"text": "seen earlier"}})
    expect(first.locator("#inbox li.personal")).to_have_attribute("data-state", "acked")
    first.context.close()
    # While no inbox was open: a personal message (stored) and one to everyone.
    api(web.base, "/api/push", {"user": user, "data": {"text": "while you were away",
                                                        "category": "news"}})
    api(web.base, "/api/publish", {"channel": "room:all", "data": {"text": f"all {user}"}})

    page = browsers.page(f"{web.base}/inbox?user={user}", width=width)
    live(page)
    personal = page.locator("#inbox li.personal")
    expect(personal).to_have_count(2)
    expect(personal.filter(has_text="seen earlier")).to_have_attribute("data-state", "acked")
    expect(personal.filter(has_text="while you were away")).to_have_attribute(
        "data-state", "acked")  # delivered on connect, shown, acked by the client
    expect(page.locator("#inbox li.everyone", has_text=f"all {user}")).to_have_count(1)
    newest = personal.first  # newest first
    expect(newest).to_contain_text("while you were away")
    expect(newest.locator(".tag")).to_have_text("news")

    # After a reload: the same lines, once each, and new ones still arrive live.
    page.reload()
    live(page)
    expect(personal).to_have_count(2)
    expect(page.locator("#inbox li.personal[data-state=acked]")).to_have_count(2)
    api(web.base, "/api/push", {"user": user, "data": {"text": "live one"}})
    expect(personal).to_have_count(3)
    expect(personal.first).to_contain_text("live one")
    page.wait_for_timeout(300)
    msgs = page.eval_on_selector_all("#inbox li", "els => els.map((el) => el.dataset.msg)")
    assert len(msgs) == len(set(msgs)) and seen["msg"] in msgs
    expect(page.locator("#inbox-count")).to_have_text(str(len(msgs)))
    assert_no_sideways_scroll(page)
    shot(page, f"inbox-records-{width}")


def test_the_console_table_fits_a_phone(web, browsers, shot) -> None:
    user = f"pia{secrets.token_hex(3)}"
    inbox = browsers.page(f"{web.base}/inbox?user={user}")
    console = browsers.page(web.base + "/console", width=PHONE, height=900)
    live(inbox)
    live(console)
    send(console, "a long message to see how the row wraps on a narrow screen", user=user,
         category="alert")
    pushed = row(console, "a long message")
    expect(pushed).to_have_attribute("data-status", "acked")
    send(console, "to everyone, from a phone")
    expect(row(console, "to everyone")).to_have_attribute("data-status", "published")
    assert_no_sideways_scroll(console)
    # The point of the page stays in view: both times of the push, labelled, inside the card.
    card = console.locator(".sent-card").bounding_box()
    for cell in ("delivered", "acked"):
        td = pushed.locator(f"td.{cell}")
        expect(td.locator("time")).to_have_count(1)
        box = td.bounding_box()
        assert box["x"] >= card["x"] and box["x"] + box["width"] <= card["x"] + card["width"]
        label = td.evaluate("(el) => getComputedStyle(el, '::before').content")
        assert label == f'"{cell.capitalize()}"', label
    assert console.evaluate(
        "(el) => el.scrollWidth <= el.clientWidth",
        console.locator(".sent-card").element_handle())
    shot(console, "console-phone")
