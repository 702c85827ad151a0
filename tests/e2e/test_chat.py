"""Chat between two browsers: rooms, nicknames, presence, and user text staying text."""

from __future__ import annotations

import secrets

from playwright.sync_api import expect

PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "\"><svg onload=alert(3)>",
    "<iframe src=\"javascript:alert(4)\"></iframe>",
]


def live(page) -> None:
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")


def enter(page, nick: str, room: str) -> None:
    """Take a nickname and join (and switch to) a room."""
    live(page)
    page.fill("#nick-input", nick)
    page.click("#nick-form button")
    expect(page.locator("#whoami")).to_have_text(f"as {nick}")
    live(page)
    page.fill("#room-input", room)
    page.press("#room-input", "Enter")
    expect(page.locator("#room-name")).to_have_text(room)


def say(page, text: str) -> None:
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-input")).to_have_value("")


def test_two_browsers_chat_with_presence_and_xss_as_text(web, browsers, shot) -> None:
    tag = secrets.token_hex(3)
    alice, bob, room = f"alice-{tag}", f"bob-{tag}", f"e2e-{tag}"
    a = browsers.page(web.base + "/chat")
    b = browsers.page(web.base + "/chat")
    enter(a, alice, room)
    enter(b, bob, room)

    # Presence: each sees both (bob from the presence op, alice too; alice sees bob join).
    for page in (a, b):
        expect(page.locator("#presence li")).to_have_count(2)
        expect(page.locator("#presence")).to_contain_text(alice)
        expect(page.locator("#presence")).to_contain_text(bob)
    expect(a.locator("#messages li.event", has_text=f"{bob} joined")).to_have_count(1)

    say(a, "hello bob")
    got = b.locator("#messages li.msg", has_text="hello bob")
    expect(got).to_have_count(1)
    expect(got.locator(".from")).to_have_text(alice)

    for payload in PAYLOADS:
        say(b, payload)
    texts = a.locator("#messages li.msg .text")
    expect(texts).to_have_count(1 + len(PAYLOADS))
    assert texts.all_text_contents()[1:] == PAYLOADS
    for page in (a, b):
        assert page.locator("#messages img, #messages script, #messages svg, "
                            "#messages iframe").count() == 0
    a.wait_for_timeout(300)  # give any injected handler a chance to fire
    assert browsers.dialogs == []
    shot(a, "chat")

    # Rooms: messages stay in their room; leaving updates the other side's presence.
    b.locator("#rooms li", has_text="lobby").locator("button.room").click()
    expect(b.locator("#room-name")).to_have_text("lobby")
    say(a, "only in the new room")
    expect(b.locator("#rooms li", has_text=room).locator(".unread")).to_have_text("1")
    expect(b.locator("#messages")).not_to_contain_text("only in the new room")
    b.locator("#rooms li", has_text=room).locator("button.leave").click()
    expect(b.locator("#rooms li", has_text=room)).to_have_count(0)
    expect(a.locator("#presence li")).to_have_count(1)
    expect(a.locator("#messages li.event", has_text=f"{bob} left")).to_have_count(1)
