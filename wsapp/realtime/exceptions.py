"""The real-time layer's exceptions, in one place.

    Exception
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
