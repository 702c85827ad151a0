"""Each example in a real browser, and README's "Add wsapp to your Flask app" section, whose
code is examples/quickstart.py as it stands."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from playwright.sync_api import expect

README = Path(__file__).resolve().parents[2] / "README.md"
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def readme_section_code(title: str) -> str:
    """The first ```python block under README's `## title`."""
    text = README.read_text("utf-8")
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readmes_add_wsapp_section_is_the_quickstart_example_and_it_runs(example, browsers,
                                                                          shot):
    assert readme_section_code("Add wsapp to your Flask app") == QUICKSTART.read_text("utf-8")
    app = example("quickstart")
    one, two = browsers.page(app.base + "/"), browsers.page(app.base + "/")
    for page in (one, two):
        expect(page.locator("#text")).to_be_visible()
    one.wait_for_timeout(500)  # both subscribed
    one.fill("#text", "hello <b>there</b>")
    one.press("#text", "Enter")
    for page in (one, two):  # the RPC published it, upper-cased, by the session's user
        said = page.locator("#said li")
        expect(said).to_have_count(1)
        expect(said).to_have_text(re.compile(r"^guest-[0-9a-f]{6}: HELLO <B>THERE</B>$"))
    expect(one.locator("#text")).to_have_value("")
    shot(one, "example-quickstart")


def sign_in(page, name: str) -> None:
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", name * 2)
    page.click("form button")
    expect(page.locator("#me")).to_have_text(name)


def said(page) -> list[str]:
    return [re.sub(r"^\d\d:\d\d:\d\d", "", t)
            for t in page.locator("#messages li").all_text_contents()]


def test_chat_with_the_apps_own_login_membership_and_database(example, browsers, shot,
                                                              tmp_path):
    app = example("chat")
    alice = browsers.page(app.base + "/")
    alice.fill("input[name=name]", "alice")
    alice.fill("input[name=password]", "wrong")
    alice.click("form button")
    expect(alice.locator("#login-error")).to_have_text("unknown user or wrong password")
    sign_in(alice, "alice")
    alice.wait_for_timeout(300)
    for text in ("first", "second <i>x</i>"):
        alice.fill("#text", text)
        alice.press("#text", "Enter")
        expect(alice.locator("#text")).to_have_value("")
    expect(alice.locator("#messages li")).to_have_count(2)
    # on_publish validates: nothing stored or sent for an empty or too long message
    alice.fill("#text", "x" * 501)
    alice.press("#text", "Enter")
    expect(alice.locator("#error")).to_have_text("at most 500 characters")

    # bob opens the room: its history comes from the app's database, then live messages.
    bob = browsers.page(app.base + "/", width=390)
    sign_in(bob, "bob")
    expect(bob.locator("#messages li")).to_have_count(2)
    assert said(bob) == ["alicefirst", "alicesecond <i>x</i>"]
    alice.fill("#text", "third")
    alice.press("#text", "Enter")
    expect(bob.locator("#messages li")).to_have_count(3)
    bob.reload()
    expect(bob.locator("#messages li")).to_have_count(3)
    assert said(bob) == ["alicefirst", "alicesecond <i>x</i>", "alicethird"]
    assert bob.locator("#messages i").count() == 0  # text, never HTML
    shot(bob, "example-chat-390")

    # on_subscribe decides membership from the app's table: bob is not in #staff.
    bob.click("#rooms button[data-room=staff]")
    expect(bob.locator("#error")).to_have_text("you are not a member of #staff")
    alice.click("#rooms button[data-room=staff]")
    alice.fill("#text", "staff only")
    alice.press("#text", "Enter")
    expect(alice.locator("#messages li")).to_have_count(1)
    bob.wait_for_timeout(300)
    expect(bob.locator("#messages li")).to_have_count(0)

    with sqlite3.connect(tmp_path / "data" / "chat.db") as db:
        rows = db.execute("SELECT room, user, text FROM messages ORDER BY id").fetchall()
    assert rows == [("general", "alice", "first"), ("general", "alice", "second <i>x</i>"),
                    ("general", "alice", "third"), ("staff", "alice", "staff only")]


def test_a_long_job_started_by_rpc_reports_each_step(example, browsers, shot):
    app = example("jobs")
    page = browsers.page(app.base + "/")
    other = browsers.page(app.base + "/")  # another browser: another user
    expect(page.locator("#start")).to_be_enabled()
    expect(other.locator("#start")).to_be_enabled()
    page.evaluate("""() => {
      window.steps = [];
      new MutationObserver(() => {
        const li = document.querySelector("#jobs li");
        if (li && li.dataset.step) window.steps.push(+li.dataset.step);
      }).observe(document.getElementById("jobs"), { subtree: true, attributes: true });
    }""")
    page.click("#start")
    job = page.locator("#jobs li")
    expect(job.locator(".label")).to_have_text(re.compile(r"^job \w+: (started|step)"))
    expect(job.locator(".label")).to_have_text(re.compile(r": done$"), timeout=15_000)
    steps = page.evaluate("window.steps")
    assert sorted(set(steps)) == list(range(1, 21)), steps  # every step, one at a time
    assert steps == sorted(steps)
    assert other.locator("#jobs li").count() == 0  # nobody else hears of it
    shot(page, "example-jobs")


def test_a_dashboard_of_several_values_pushed_together(example, browsers, shot):
    app = example("dashboard")
    page = browsers.page(app.base + "/")
    expect(page.locator("#time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    first = page.text_content("#time")
    expect(page.locator("#time")).not_to_have_text(first, timeout=5000)  # it ticks
    expect(page.locator("#place")).to_have_text(re.compile(r"^[A-Z][a-z]+"))
    expect(page.locator("#online")).to_have_text("1")
    other = browsers.page(app.base + "/")
    expect(other.locator("#online")).to_have_text("2")
    expect(page.locator("#online")).to_have_text("2")
    shot(page, "example-dashboard")
    other.context.close()
    expect(page.locator("#online")).to_have_text("1")
