"""The real-time layer's exceptions, in one place.

    Exception
    ├── Reject(code, reason)                     raised by an app's hook or RPC to refuse:
    │                                            the client gets an `error` with that code
    └── RequestError(code, reason, request_id)   a request refused; `code` is from the error
        │                                        table of docs/protocol.md and docs/api.md
        └── StoreUnavailable                     an engine cannot do it right now: code
                                                 `unavailable` (HTTP 503); retry later

A RequestError is an expected answer, never a bug: /ws replies with an `error` frame and keeps
the connection, the HTTP API with a JSON error and the fitting status; nothing is logged as a
traceback.
"""

from __future__ import annotations

from typing import Any


class Reject(Exception):
    """Refuse from an app's hook: `raise Reject("not_member", "join the room first")`.

    In a subscribe, publish or RPC hook the client gets an `error` frame with this code and
    reason, and the connection stays. In `authenticate` or `on_connect` the connection is
    refused: closed with 4401 when the code is "unauthorized", else 4403 (or with `code`
    itself when it is a number from 4000 to 4999), the reason being "<code>: <reason>".
    """

    def __init__(self, code: str | int = "forbidden", reason: str = "") -> None:
        super().__init__(f"{code}: {reason}" if reason else str(code))
        self.code = code
        self.reason = reason

    @property
    def close_code(self) -> int:
        """The WebSocket close code this refusal closes a connection with."""
        if isinstance(self.code, int) and 4000 <= self.code <= 4999:
            return self.code
        return 4401 if self.code == "unauthorized" else 4403

    @property
    def error_code(self) -> str:
        """The `code` of the error frame this refusal answers a request with."""
        return self.code if isinstance(self.code, str) else "forbidden"


class RequestError(Exception):
    """A request the server refuses; `code` is from docs/protocol.md's error table."""

    def __init__(self, code: str, reason: str, request_id: Any = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.request_id = request_id


class StoreUnavailable(RequestError):
    """An engine is unreachable or overloaded: the operation was not done (`unavailable`)."""

    def __init__(self, what: str, where: str, why: str = "unreachable") -> None:
        super().__init__("unavailable", f"{what} needs {where}, which is {why} right now; "
                         "retry later")
