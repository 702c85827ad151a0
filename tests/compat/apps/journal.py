"""What an app saw, for the tests to read back: `record()` appends an event, and the WSGI
app `events_app` answers GET /_events with {"pid": ..., "events": [...]} (`websocket_only`
puts it in front of a plain WSGI app).

The pid is the process serving the app (gunicorn's worker, not its arbiter), so a test can
read that process's CPU time from /proc. Events stay in memory: one process per server.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

EVENTS: list[dict[str, Any]] = []


def record(kind: str, **data: Any) -> None:
    """Remember one event (`kind` plus JSON-able details) with its time."""
    EVENTS.append({"kind": kind, "t": time.time(), **data})


def snapshot() -> dict[str, Any]:
    """What GET /_events answers."""
    return {"pid": os.getpid(), "events": EVENTS}


def events_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """A plain WSGI app answering with snapshot() as JSON."""
    body = json.dumps(snapshot()).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def websocket_only(app: Callable) -> Callable:
    """`app` behind a WSGI layer that answers GET /_events itself and refuses any other
    request without environ["wsgi.websocket"] with 400 "WebSocket only"."""

    def serve(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/_events":
            return events_app(environ, start_response)
        if environ.get("wsgi.websocket") is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"WebSocket only\n"]
        return app(environ, start_response)

    return serve


def plain_signature(func: Callable) -> str:
    """`func`'s signature without annotations: parameter names, kinds and defaults only,
    so a typed reimplementation compares equal to an untyped original."""
    sig = inspect.signature(func)
    params = [p.replace(annotation=p.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=sig.empty))
