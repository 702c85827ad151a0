"""A PostgreSQL outbox table: `postgresql://USER@HOST:PORT/DB?table=NAME` (psycopg 3).

The application inserts feed messages into the table inside its own transactions, so a
message exists exactly when the change it announces was committed (the outbox pattern):

    CREATE TABLE outbox (
        id         bigserial   PRIMARY KEY,
        message    jsonb       NOT NULL,            -- the feed message (feeds/message.py)
        created_at timestamptz NOT NULL DEFAULT now()
    );
    INSERT INTO outbox (message) VALUES ('{"op":"push","user":"ann","data":{"n":1},"key":"o-7"}');

Each process takes up to a batch of the oldest rows with `SELECT ... FOR UPDATE SKIP LOCKED`
in a transaction it keeps open while the batch is applied; once the store committed the
batch, the same transaction deletes the rows (and moves poison rows to the dead-letter
table) and commits. So each row is taken by one process at a time; a process that dies
mid-batch loses its connection, PostgreSQL rolls its transaction back and releases the
locks, and another process takes the rows — their keys (or `<table>#<id>@<created_at>`,
when a message has no key) make the repeat a no-op. A row that was locked before by a
transaction that did not delete it counts as redelivered (its xmax is set).

Waking: a statement trigger `NOTIFY`s the channel on every insert, delivered when the
inserting transaction commits; the table is also polled every `poll` seconds (default 1) in
case a notification was missed (a reconnect, a trigger someone dropped). An application may
`NOTIFY` the channel itself instead of the trigger.

wsapp creates what is missing at connect, under an advisory lock so processes starting
together do not race: the table, the dead-letter table `<table>_dead` (id, message, reason,
created_at, dead_at) and the trigger `<table>_wsapp_notify` with its function. Options:
`table` (required; `schema.table` allowed), `dead` (dead-letter table), `channel` (default
`wsapp_<table>`), `poll` (seconds), plus libpq's own (sslmode=...). With a `message jsonb`
column PostgreSQL itself refuses a message that is not JSON; a `text` column works as well.

gevent: psycopg notices gevent's monkey-patched `select` and waits through it (never in C),
so the feed's queries and its LISTEN wait are cooperative. Give the host as an IP address:
libpq resolves host names in C, which would block the process while DNS answers.
Each session sets `idle_in_transaction_session_timeout` (a hung process cannot hold its
rows forever) and server-side TCP keepalives (a vanished one is noticed within ~30 s).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from wsapp.realtime.feeds.base import (
    COMMON_OPTIONS,
    Delivery,
    FeedUnavailable,
    common_options,
    describe,
)
from wsapp.realtime.urls import redact, take_options

OPTIONS = ("table", "dead", "channel", "poll", *COMMON_OPTIONS)
# Matched whole (fullmatch): `$` would let a trailing newline into the SQL.
NAME_RE = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}")
SETUP_LOCK = "wsapp-feed-setup"  # advisory lock key: one process creates tables at a time


class PostgresFeed:
    """The Feed of base.py on an outbox table."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.conninfo, options = self.parse(url)
        self.batch, self.timeout = common_options(redact(url), options)
        self.table = options["table"]
        bare = self.table.rpartition(".")[2]
        self.dead_letters = options.get("dead") or f"{self.table}_dead"
        self.channel = options.get("channel") or f"wsapp_{bare}"[:63]
        self.poll = float(options.get("poll") or 1.0)
        self.name = f"postgresql:{self.table}"
        self.where = redact(url)
        self._t = _identifier(self.table)
        self._dead = _identifier(self.dead_letters)
        schema = self.table[:-len(bare)]  # "" or "schema."
        self._trigger_name = f"{bare}_wsapp_notify"[:63]
        self._function = _identifier(schema + self._trigger_name)
        self._conn: psycopg.Connection | None = None
        self._more = False  # the last batch was full: more rows wait, do not wait to look
        self._polled = 0.0

    @staticmethod
    def parse(url: str) -> tuple[str, dict[str, str]]:
        """(the libpq URL, our options); ValueError naming what is wrong."""
        clean, options = take_options(url, OPTIONS)
        where = redact(url)
        table = options.get("table")
        if not table:
            raise ValueError(f"feed {where}: needs ?table=NAME")
        for name in ("table", "dead", "channel"):
            value = options.get(name)
            if value is not None and not NAME_RE.fullmatch(value):
                raise ValueError(f"feed {where}: {name} {value!r} is not a plain SQL name")
        try:
            if not 0 < float(options.get("poll") or 1.0) <= 3600:
                raise ValueError
        except ValueError:
            raise ValueError(f"feed {where}: poll must be seconds in 0..3600") from None
        common_options(where, options)
        return clean, options

    def connect(self) -> None:
        """Connect, create what is missing, set the session up and LISTEN."""
        try:
            conn = self._conn = psycopg.connect(
                self.conninfo, autocommit=False, connect_timeout=max(1, int(self.timeout)),
                application_name=f"wsapp-feed-{os.getpid()}")
            idle = max(60, int(self.timeout * 6))
            conn.execute(f"SET idle_in_transaction_session_timeout = '{idle}s'")
            for name, value in (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5),
                                ("tcp_keepalives_count", 3)):
                conn.execute(f"SET {name} = {value}")
            self._create(conn)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            conn.commit()
        except psycopg.Error as exc:
            raise FeedUnavailable(describe(exc)) from None
        self._more = True  # rows may have arrived while we were away: look at once

    def _create(self, conn: psycopg.Connection) -> None:
        """The tables and the trigger, each only when missing (one process at a time)."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SETUP_LOCK,))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, message jsonb NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())").format(self._t))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, message text NOT NULL, "
            "reason text NOT NULL, created_at timestamptz NOT NULL, "
            "dead_at timestamptz NOT NULL DEFAULT now())").format(self._dead))
        exists = conn.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = "
                              "%s::regclass", (self._trigger_name, self.table)).fetchone()
        if exists is None:
            conn.execute(sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                "$wsapp$ BEGIN PERFORM pg_notify({}, ''); RETURN NULL; END $wsapp$"
            ).format(self._function, sql.Literal(self.channel)))
            conn.execute(sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(self._trigger_name), self._t, self._function))
        conn.commit()

    def fetch(self, limit: int, wait: float) -> list[Delivery]:
        """The oldest rows nobody holds, locked in a transaction left open until settle();
        waiting up to `wait` for a notification unless more rows are known to wait."""
        conn = self._connected()
        try:
            if not self._more:
                left = self.poll - (time.monotonic() - self._polled)
                woken = left <= 0 or any(True for _ in conn.notifies(
                    timeout=min(wait, max(left, 0.0)), stop_after=1))
                if not woken:
                    return []
            self._polled = time.monotonic()
            rows = conn.execute(sql.SQL(
                "SELECT id, message::text, created_at, xmax::text FROM {} ORDER BY id LIMIT %s "
                "FOR UPDATE SKIP LOCKED").format(self._t), (limit,)).fetchall()
            if not rows:
                conn.commit()
        except psycopg.Error as exc:
            raise FeedUnavailable(describe(exc)) from None
        self._more = len(rows) == limit
        return [Delivery(message, (row_id, message, created),
                         ident=f"{row_id}@{created.isoformat()}", redelivered=xmax != "0")
                for row_id, message, created, xmax in rows]

    def settle(self, done: Sequence[Delivery], dead: Sequence[tuple[Delivery, str]]) -> None:
        """Dead rows copied to the dead-letter table, every row deleted: one commit."""
        conn = self._connected()
        try:
            if dead:
                with conn.cursor() as cur:
                    cur.executemany(sql.SQL(
                        "INSERT INTO {} (id, message, reason, created_at) VALUES (%s, %s, %s, "
                        "%s) ON CONFLICT (id) DO NOTHING").format(self._dead),
                        [(d.tag[0], d.tag[1], reason, d.tag[2]) for d, reason in dead])
            ids = [d.tag[0] for d in done] + [d.tag[0] for d, _ in dead]
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._t), (ids,))
            conn.commit()
        except psycopg.Error as exc:
            raise FeedUnavailable(describe(exc)) from None

    def lag(self) -> int | None:
        """Rows waiting in the table (those being applied included)."""
        conn = self._connected()
        try:
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._t)).fetchone()
            conn.commit()
        except psycopg.Error as exc:
            raise FeedUnavailable(describe(exc)) from None
        return int(count[0]) if count else None

    def _connected(self) -> psycopg.Connection:
        if self._conn is None:
            raise FeedUnavailable("not connected")
        return self._conn

    def close(self) -> None:
        """Drop the connection: PostgreSQL rolls back and releases the rows we held."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close; it is gone anyway
                pass


def _identifier(name: str) -> sql.Identifier:
    """A possibly schema-qualified name as a quoted SQL identifier."""
    return sql.Identifier(*name.split("."))


if TYPE_CHECKING:  # mypy proves each source implements the contract (feeds/base.py)
    from wsapp.realtime.feeds.base import Feed

    _POSTGRESFEED: type[Feed] = PostgresFeed
