"""Per-connection log lines, written by one short-lived greenlet instead of the caller.

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

_queue: deque[tuple[logging.Logger, int, str, tuple, BaseException | None]] = deque()
_writer: gevent.Greenlet | None = None


def log_soon(logger: logging.Logger, level: int, msg: str, *args: object,
             exc_info: BaseException | None = None) -> None:
    """`logger.log(level, msg, *args)`, written by the log greenlet (with `exc_info`'s
    traceback, if given: an exception keeps its own)."""
    global _writer
    if not logger.isEnabledFor(level):
        return
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
