"""The inbox page's server side: `client.rpc("inbox")` → the caller's push records.

The page lists them on open — acked ones too, which are never delivered again — and then
hears new personal messages live. Records a user never received (suppressed by a quota,
expired unseen) are left out: the inbox shows what reached, or will reach, the user.
"""

from __future__ import annotations

from typing import Any

from wsapp.realtime.exceptions import Reject
from wsapp.realtime.ext import Realtime

SHOWN = ("pending", "delivered", "acked")
LIMIT = 100


def attach(rt: Realtime) -> None:
    """Register the `inbox` RPC."""

    @rt.rpc("inbox")
    def inbox(user: str | None, params: Any) -> list[dict[str, Any]]:
        if user is None:
            raise Reject("unauthorized", "sign in first: an inbox is a user's")
        return [r for r in rt.records(user, limit=LIMIT) if r["status"] in SHOWN]
