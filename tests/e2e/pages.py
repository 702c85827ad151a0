"""What the browser tests of the demo pages share: waiting for a page's connection, the two
widths every page is checked at, the no-sideways-scroll check, and a token minted with the
API key (as a user signing in would)."""

from __future__ import annotations

import json
import urllib.request

from playwright.sync_api import expect

DESKTOP, PHONE = 1200, 390
WIDTHS = (DESKTOP, PHONE)
PAGES = ("/", "/echo", "/dashboard", "/tasks", "/chat", "/console", "/inbox")


def live(page, timeout: float = 10_000) -> None:
    """Wait until the page's /ws connection (the header's badge) is live."""
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=timeout)


def assert_no_sideways_scroll(page) -> None:
    """The document is exactly as wide as the window: nothing sticks out to the right."""
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll == client, f"{page.url} scrolls sideways: {scroll} > {client}"


def mint(base: str, key: str, user: str) -> str:
    """A token for `user` from POST /api/tokens with the API key."""
    req = urllib.request.Request(
        base + "/api/tokens", data=json.dumps({"user": user}).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["token"]


def sign_in(page, token: str, user: str) -> None:
    """Paste a token into the page's sign-in strip, as a user would."""
    page.fill("#signin-token", token)
    page.click("#signin-form button")
    expect(page.locator("#whoami")).to_have_text(f"as {user}")
    expect(page.locator("#signed-in-user")).to_have_text(user)
