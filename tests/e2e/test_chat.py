"""Chat between browsers: rooms with their history, nicknames and renames, presence, and user
text staying text."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from e2e.pages import WIDTHS, assert_no_sideways_scroll, live

PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "\"><svg onload=alert(3)>",
    "<iframe src=\"javascript:alert(4)\"></iframe>",
]


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


def texts(page) -> list[str]:
    return page.locator("#messages li.msg .text").all_text_contents()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_room_shows_its_history_on_open_and_after_reload_each_message_once(
        web, browsers, shot, width) -> None:
    tag = secrets.token_hex(3)
    room = f"hist-{tag}"
    a = browsers.page(web.base + "/chat")
    enter(a, f"ann-{tag}", room)
    for n in range(1, 4):
        say(a, f"before {n}")

    # A late joiner sees what was said, in order, then live messages once each.
    b = browsers.page(web.base + "/chat", width=width)
    enter(b, f"ben-{tag}", room)
    expect(b.locator("#messages li.msg")).to_have_count(3)
    assert texts(b) == ["before 1", "before 2", "before 3"]
    expect(b.locator("#messages li.msg .from").first).to_have_text(f"ann-{tag}")
    say(a, "live 4")
    expect(b.locator("#messages li.msg")).to_have_count(4)

    # F5: the same history, and what arrives while the page is loading comes once.
    b.reload()
    for n in range(5, 8):
        say(a, f"during reload {n}")
    live(b)
    expect(b.locator("#room-name")).to_have_text(room)
    expect(b.locator("#messages li.msg")).to_have_count(7)
    say(a, "after reload 8")
    expect(b.locator("#messages li.msg")).to_have_count(8)
    b.wait_for_timeout(300)  # nothing more (no late duplicate) arrives
    assert texts(b) == ["before 1", "before 2", "before 3", "live 4", "during reload 5",
                        "during reload 6", "during reload 7", "after reload 8"]
    assert_no_sideways_scroll(b)
    shot(b, f"chat-history-{width}")


def test_a_nickname_change_shows_others_one_rename(web, browsers) -> None:
    tag = secrets.token_hex(3)
    room, old, new = f"ren-{tag}", f"xavi-{tag}", f"yann-{tag}"
    watcher = browsers.page(web.base + "/chat")
    enter(watcher, f"wendy-{tag}", room)
    renamer = browsers.page(web.base + "/chat")
    enter(renamer, old, room)
    expect(watcher.locator("#presence")).to_contain_text(old)
    expect(watcher.locator("#messages li.event", has_text=f"{old} joined")).to_have_count(1)

    renamer.fill("#nick-input", new)
    renamer.click("#nick-form button")
    expect(renamer.locator("#whoami")).to_have_text(f"as {new}")
    live(renamer)
    expect(watcher.locator("#presence")).to_contain_text(new)
    expect(watcher.locator("#presence li")).to_have_count(2)
    watcher.wait_for_timeout(1000)  # the leave and join of the reconnect have come by now
    events = watcher.locator("#messages li.event").all_text_contents()
    assert [e[5:] for e in events] == [f"{old} joined", f"{old} is now {new}"], events
    expect(watcher.locator("#presence")).not_to_contain_text(old)
    # The renamer's own page says it too, and both keep chatting under the new name.
    expect(renamer.locator("#messages li.event", has_text=f"{old} is now {new}")).to_have_count(1)
    say(renamer, "same person, new name")
    expect(watcher.locator("#messages li.msg", has_text="same person").locator(".from")
           ).to_have_text(new)
