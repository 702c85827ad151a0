"""Per-connection log lines are written in order by one greenlet, not by the caller."""

import logging

import gevent
import pytest

from wsapp.websocket.logsoon import log_soon, printable


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[logging.LogRecord, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record, gevent.getcurrent()))


@pytest.fixture
def logger():
    lg = logging.getLogger("wsapp.test.logsoon")
    handler = _Collect()
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    lg.propagate = False
    yield lg, handler
    lg.removeHandler(handler)


def test_lines_are_written_in_order_by_another_greenlet(logger):
    lg, handler = logger
    for i in range(5):
        log_soon(lg, logging.INFO, "line %d of %s", i, "five")
    assert handler.records == []  # nothing written on the caller's stack
    gevent.sleep(0)
    gevent.sleep(0)
    assert [r.getMessage() for r, _ in handler.records] == [f"line {i} of five" for i in range(5)]
    assert all(g is not gevent.getcurrent() for _, g in handler.records)


def test_disabled_levels_cost_nothing(logger):
    lg, handler = logger
    log_soon(lg, logging.DEBUG, "hidden %s", object())
    gevent.sleep(0.01)
    assert handler.records == []


def test_an_exception_keeps_its_traceback(logger):
    lg, handler = logger
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log_soon(lg, logging.ERROR, "route %s raised", "/ws/x", exc_info=exc)
    gevent.sleep(0.01)
    (record, _), = handler.records
    assert record.levelno == logging.ERROR and record.getMessage() == "route /ws/x raised"
    assert record.exc_info[0] is ValueError
    assert "boom" in logging.Formatter().format(record)


def test_a_failing_handler_does_not_stop_later_lines(logger):
    lg, handler = logger

    class Boom(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "first":
                raise RuntimeError("handler bug")

    boom = Boom()
    boom.handleError = lambda record: (_ for _ in ()).throw(RuntimeError("raised"))
    lg.addHandler(boom)
    try:
        log_soon(lg, logging.INFO, "first")
        log_soon(lg, logging.INFO, "second")
        gevent.sleep(0.05)
    finally:
        lg.removeHandler(boom)
    assert [r.getMessage() for r, _ in handler.records] == ["first", "second"]


@pytest.mark.parametrize(("sent", "logged"), [
    ("/ws", "/ws"),
    ("/ws/echo\n2026-01-01 INFO forged", "/ws/echo\\n2026-01-01 INFO forged"),
    ("a\r\nb", "a\\r\\nb"),
    ("\x1b[2Jred", "\\x1b[2Jred"),
    ("caf\u00e9 \u2028 \ud800", "caf\u00e9 \\u2028 \\ud800"),
    ("back\\slash", "back\\\\slash"),  # so an escape in the log is always the client's byte
])
def test_printable_escapes_what_could_forge_a_line_or_drive_a_terminal(sent, logged):
    assert printable(sent) == logged
    assert printable(sent).isprintable()


def test_printable_cuts_a_long_field_and_says_by_how_much():
    assert printable("x" * 600, limit=10) == "xxxxxxxxxx...(+590 chars)"


def test_log_soon_escapes_every_text_argument(logger):
    lg, handler = logger
    log_soon(lg, logging.INFO, "close %s %d %s", "/ws\nFORGED", 1000, "bye\x1b")
    gevent.sleep(0)
    gevent.sleep(0)
    assert [r.getMessage() for r, _ in handler.records] == ["close /ws\\nFORGED 1000 bye\\x1b"]
