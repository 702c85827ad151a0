"""Per-connection log lines, written by one short-lived greenlet instead of the caller, with
every text field escaped (`printable`): they carry what clients sent (paths, reasons).

A connection's greenlet keeps every page of Python frame stack it ever touched for as long
as it lives. Logging from deep inside a route (the upgrade line is written when the route
first uses its socket) runs formatting and handlers on top of that stack and costs each
idle connection ~4.5 kB at the default INFO level. Queued here, the lines are written in
order, within the same loop iteration, from a greenlet that exits when the queue is empty.
"""

from __future__ import annotations

import logging
from collections import deque

import gevent

FIELD_MAX = 512  # characters of one logged field: a 64 KiB path is not a log line

_queue: deque[tuple[logging.Logger, int, str, tuple, BaseException | None]] = deque()
_writer: gevent.Greenlet | None = None


def printable(value: object, limit: int = FIELD_MAX) -> str:
    """`value` as one line of printable text, safe to log whatever a client put in it.

    Control characters (newline, carriage return, ESC...), other non-printable ones (U+2028,
    lone surrogates) and the backslash itself come out as Python escapes (`\\n`, `\\x1b`,
    `\\u2028`, `\\\\`), so a client can neither start a forged log line nor drive a
    terminal, and an escape in the log always means the client sent that character. Past
    `limit` characters the rest is cut, and the line says how much.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}...(+{len(text) - limit} chars)"
    if text.isprintable() and "\\" not in text:
        return text  # the usual case: nothing to escape
    return "".join(c if c.isprintable() and c != "\\"
                   else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def log_soon(logger: logging.Logger, level: int, msg: str, *args: object,
             exc_info: BaseException | None = None) -> None:
    """`logger.log(level, msg, *args)`, written by the log greenlet (with `exc_info`'s
    traceback, if given: an exception keeps its own). Every text argument is logged through
    `printable`: the callers pass request data (paths, close reasons, refusal reasons)."""
    global _writer
    if not logger.isEnabledFor(level):
        return
    args = tuple(printable(a) if isinstance(a, str) else a for a in args)
    _queue.append((logger, level, msg, args, exc_info))
    if _writer is None:
        _writer = gevent.spawn(_write_all)


def flush() -> None:
    """Write every queued line now, from the caller: at shutdown the process may end before
    the log greenlet runs again, and the close lines of the last connections are the ones
    an operator reads."""
    while _queue:  # the log greenlet, when it runs, finds the queue empty and ends
        logger, level, msg, args, exc_info = _queue.popleft()
        logger.log(level, msg, *args, exc_info=exc_info)


def _write_all() -> None:
    global _writer
    try:
        flush()
    finally:
        _writer = None
        if _queue:  # a handler raised: the rest still gets written
            _writer = gevent.spawn(_write_all)
