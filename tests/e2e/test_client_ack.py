"""The JS client itself acks personal messages after the page's handlers ran.

The chat page has no ack code of its own, so a push to a chat user that ends up "acked" in
the push records was acked by wsapp.js.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request

from playwright.sync_api import expect


def api(web, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(web.base + path, method=method,
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def record(web, user: str, msg: str) -> dict:
    records = api(web, "GET", f"/api/users/{user}/messages")["messages"]
    return {r["msg"]: r for r in records}[msg]


def test_personal_messages_are_acked_by_the_client(web, browsers) -> None:
    user = f"ack{secrets.token_hex(3)}"
    page = browsers.page(f"{web.base}/chat")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")
    page.fill("#nick-input", user)
    page.click("#nick-form button")
    expect(page.locator("#whoami")).to_have_text(f"as {user}")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")
    pushed = api(web, "POST", "/api/push", {"user": user, "data": {"note": "hi"}})
    assert pushed["status"] == "delivered"
    deadline = time.monotonic() + 15
    while record(web, user, pushed["msg"])["status"] != "acked":
        assert time.monotonic() < deadline, record(web, user, pushed["msg"])
        time.sleep(0.2)
