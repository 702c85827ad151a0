"""The SQLite store: the embedded engine, one file in WAL mode (the Store of engines/base.py).

Every write goes through `apply(jobs)`, which runs a batch of jobs in ONE transaction on
the store's own thread, in order: offsets come out monotonic per channel, a batch costs one
commit however many publishes it holds, and the gevent hub never waits on SQLite. Reads run
on the same thread (so they see every earlier write).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gevent.threadpool import ThreadPool

from wsapp.realtime.engines.base import (
    ACKED,
    DELIVERED,
    EXPIRED,
    PENDING,
    SUPPRESSED,
    Health,
    History,
    Job,
    Quotas,
    Replay,
    job_keep,
    job_key,
)
from wsapp.realtime.files import private_dir, private_file, tighten_existing
from wsapp.realtime.limits import applicable_quotas

SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, last_offset INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL, offset INTEGER NOT NULL, msg TEXT NOT NULL, sender TEXT,
    ts INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (channel, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pushes (
    msg TEXT PRIMARY KEY, user TEXT NOT NULL, offset INTEGER, category TEXT,
    data TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, created INTEGER NOT NULL,
    delivered INTEGER, acked INTEGER, expires INTEGER, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS pushes_user ON pushes (user, created);
CREATE TABLE IF NOT EXISTS revocations (user TEXT PRIMARY KEY, before INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, expires INTEGER NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires);
"""
KEY_SWEEP_MS = 60_000  # expired idempotency keys are deleted at most this often


def sqlite_path(url: str) -> str:
    """The file path of a SQLAlchemy-style sqlite URL (three slashes relative, four absolute)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (use sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db)")
    path = url[len("sqlite:///"):]
    if not path:
        raise ValueError("sqlite URL names no file")
    return path


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, used from one dedicated thread."""

    def __init__(self, url: str, history_size: int = 1000, history_ttl: float = 86400.0,
                 key_ttl: float = 86400.0) -> None:
        self.path = sqlite_path(url)
        self.history_size = history_size
        self.history_ttl_ms = int(history_ttl * 1000)
        self.key_ttl_ms = int(key_ttl * 1000)
        self._swept = 0  # when expired keys were last deleted (ms)
        self._pool = ThreadPool(1)  # one thread: jobs run in submission order
        self._conn: sqlite3.Connection | None = None
        self._run(self._open)

    # -- thread plumbing -------------------------------------------------------------

    def _run(self, func: Any, *args: Any) -> Any:
        """`func(*args)` on the store's thread; its exception is raised here, in the caller,
        only (gevent's pool would also print it as a traceback: a refused write or a bad path
        is the caller's to report, once)."""
        def call() -> tuple[Any, BaseException | None]:
            try:
                return func(*args), None
            except Exception as exc:
                return None, exc

        result, error = self._pool.apply(call)
        if error is not None:
            raise error
        return result

    def _open(self) -> None:
        if self.path != ":memory:":
            # Private: it holds every user's personal messages (SQLite gives new -wal and
            # -shm files the database file's mode; older ones are tightened too).
            folder = Path(self.path).parent
            if not folder.exists():
                private_dir(folder)  # a folder we make; an existing one is the operator's
            private_file(self.path)
            tighten_existing(self.path + "-wal", self.path + "-shm")
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed batch survives a process crash (kill -9); only an
        # OS crash or power loss can lose the last transactions.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        self._conn = db

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection (only ever used on the store's thread)."""
        if self._conn is None:
            raise RuntimeError("the SQLite store is closed")
        return self._conn

    def health(self) -> Health:
        """Always up: a file this process opened (a broken disk fails the write itself)."""
        return {"engine": "sqlite", "state": "up", "detail": self.path}

    def close(self) -> None:
        """Close the database and stop the thread."""
        if self._conn is not None:
            self._run(self._conn.close)
            self._conn = None
        self._pool.kill()

    # -- writes ----------------------------------------------------------------------

    def apply(self, jobs: Sequence[Job]) -> list[Any]:
        """Run write jobs in one transaction, in order; one result per job."""
        return self._run(self._apply, jobs)

    def _apply(self, jobs: Sequence[Job]) -> list[Any]:
        db = self._db
        results: list[Any] = []
        now_ms = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        try:
            touched: dict[str, int] = {}
            keeps: dict[str, tuple[int, int]] = {}  # channels with history options of their own
            for job in jobs:
                kind = job[0]
                scoped = job_key(job)
                if scoped is not None:
                    seen = db.execute("SELECT value FROM idempotency WHERE key=? AND expires>=?",
                                      (scoped, now_ms)).fetchone()
                    if seen is not None:
                        results.append(Replay.decode(seen[0]))
                        continue
                if kind == "publish":
                    _, channel, msg, sender, ts, data = job[:6]
                    offset = self._append(db, channel, msg, sender, ts, data)
                    touched[channel] = offset
                    keep = job_keep(job)
                    if keep is not None:
                        keeps[channel] = keep
                    results.append(offset)
                elif kind == "push":
                    _, user, msg, ts, data, category, expires, quotas = job[:8]
                    results.append(self._push(db, user, msg, ts, data, category, expires,
                                              quotas, touched))
                elif kind == "delivered":
                    _, msgs, ts = job
                    db.executemany(
                        "UPDATE pushes SET status=?, delivered=COALESCE(delivered, ?), "
                        "attempts=attempts+1 WHERE msg=? AND status IN (?, ?)",
                        [(DELIVERED, ts, m, PENDING, DELIVERED) for m in msgs])
                    results.append(None)
                else:
                    raise ValueError(f"unknown store job {kind!r}")
                if scoped is not None:
                    db.execute("INSERT OR REPLACE INTO idempotency (key, expires, value) "
                               "VALUES (?, ?, ?)", (scoped, now_ms + self.key_ttl_ms,
                                                    Replay.encode(job[2], results[-1])))
            if now_ms - self._swept > KEY_SWEEP_MS:
                self._swept = now_ms
                db.execute("DELETE FROM idempotency WHERE expires<?", (now_ms,))
            for channel, last in touched.items():
                size, ttl_ms = keeps.get(channel, (self.history_size, self.history_ttl_ms))
                db.execute("DELETE FROM messages WHERE channel=? AND (offset<=? OR ts<?)",
                           (channel, last - size, now_ms - ttl_ms))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    def _append(self, db: sqlite3.Connection, channel: str, msg: str, sender: str | None,
                ts: int, data: str) -> int:
        row = db.execute("SELECT last_offset FROM channels WHERE name=?", (channel,)).fetchone()
        offset = (row[0] if row else 0) + 1
        db.execute("INSERT OR REPLACE INTO channels (name, last_offset) VALUES (?, ?)",
                   (channel, offset))
        db.execute("INSERT INTO messages (channel, offset, msg, sender, ts, data) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (channel, offset, msg, sender, ts, data))
        return offset


    def _push(self, db: sqlite3.Connection, user: str, msg: str, ts: int, data: str,
              category: str | None, expires: int | None,
              quotas: Quotas, touched: dict[str, int]) -> tuple[str, str | None, int | None]:
        """Check the user's quotas; record the push, and append it to user:<id> if allowed."""
        for name, limit, window, reason in applicable_quotas(quotas, user, category):
            since = ts - int(window * 1000)
            if name == "total":
                count = db.execute(
                    "SELECT COUNT(*) FROM pushes WHERE user=? AND created>=? AND status!=?",
                    (user, since, SUPPRESSED)).fetchone()[0]
            else:
                count = db.execute(
                    "SELECT COUNT(*) FROM pushes WHERE user=? AND category=? AND created>=? "
                    "AND status!=?", (user, category, since, SUPPRESSED)).fetchone()[0]
            if count >= limit:
                db.execute("INSERT INTO pushes (msg, user, category, data, status, reason, "
                           "created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (msg, user, category, data, SUPPRESSED, reason, ts, expires))
                return SUPPRESSED, reason, None
        channel = f"user:{user}"
        offset = self._append(db, channel, msg, None, ts, data)
        touched[channel] = offset
        db.execute("INSERT INTO pushes (msg, user, offset, category, data, status, created, "
                   "expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (msg, user, offset, category, data, PENDING, ts, expires))
        return PENDING, None, offset

    def ack(self, user: str, msg: str, ts: int) -> str | None:
        """Mark `msg` acked if it is `user`'s; returns its status after, None if not found."""
        return self._run(self._ack, user, msg, ts)

    def _ack(self, user: str, msg: str, ts: int) -> str | None:
        db = self._db
        row = db.execute("SELECT status, expires FROM pushes WHERE msg=? AND user=?",
                         (msg, user)).fetchone()
        if row is None:
            return None
        status, expires = row
        if status in (PENDING, DELIVERED):
            if expires is not None and expires < ts:
                db.execute("UPDATE pushes SET status=? WHERE msg=?", (EXPIRED, msg))
                return EXPIRED
            # An ack proves delivery: fill the time in if the queued "delivered" update has
            # not landed yet (it runs on the writer, the ack does not wait for it).
            db.execute("UPDATE pushes SET status=?, acked=?, delivered=COALESCE(delivered, ?), "
                       "attempts=MAX(attempts, 1) WHERE msg=?", (ACKED, ts, ts, msg))
            return ACKED
        return status

    def revoke(self, user: str, before: int) -> None:
        """Refuse `user`'s tokens issued before `before` (ms); revocations only move on."""
        self._run(self._db.execute,
                  "INSERT INTO revocations (user, before) VALUES (?, ?) ON CONFLICT(user) DO "
                  "UPDATE SET before=MAX(before, excluded.before)", (user, before))

    def revoked(self, user: str) -> int:
        """Epoch ms before which `user`'s tokens are refused (0: none are)."""
        return self._run(self._revoked, user)

    def _revoked(self, user: str) -> int:
        row = self._db.execute("SELECT before FROM revocations WHERE user=?", (user,)).fetchone()
        return row[0] if row else 0

    # -- reads -----------------------------------------------------------------------

    def history(self, channel: str, since: int, limit: int) -> History:
        """Messages with offset > since (oldest first, at most `limit`), and what is kept."""
        return self._run(self._history, channel, since, limit)

    def _history(self, channel: str, since: int, limit: int) -> History:
        db = self._db
        rows = db.execute(
            "SELECT offset, msg, sender, ts, data FROM messages WHERE channel=? AND offset>? "
            "ORDER BY offset LIMIT ?", (channel, since, limit)).fetchall()
        first = db.execute("SELECT MIN(offset) FROM messages WHERE channel=?",
                           (channel,)).fetchone()[0]
        last = db.execute("SELECT last_offset FROM channels WHERE name=?",
                          (channel,)).fetchone()
        last = last[0] if last else 0
        return {"messages": [_message_row(channel, r) for r in rows],
                "first_offset": first if first is not None else last + 1,
                "last_offset": last}

    def last_offset(self, channel: str) -> int:
        """The channel's newest offset (0 when it has none)."""
        return self._run(self._last_offset, channel)

    def _last_offset(self, channel: str) -> int:
        row = self._db.execute("SELECT last_offset FROM channels WHERE name=?",
                               (channel,)).fetchone()
        return row[0] if row else 0

    def pending(self, user: str, ts: int) -> list[dict]:
        """The user's unacked, unexpired personal messages, oldest first."""
        return self._run(self._pending, user, ts)

    def _pending(self, user: str, ts: int) -> list[dict]:
        self._expire(user, ts)
        rows = self._db.execute(
            "SELECT msg, offset, created, data FROM pushes WHERE user=? AND status IN (?, ?) "
            "ORDER BY offset", (user, PENDING, DELIVERED)).fetchall()
        return [{"msg": m, "offset": o, "ts": c, "data": json.loads(d)} for m, o, c, d in rows]

    def records(self, user: str, status: str | None, limit: int, ts: int) -> list[dict]:
        """The user's push records, newest first, optionally of one status."""
        return self._run(self._records, user, status, limit, ts)

    def _records(self, user: str, status: str | None, limit: int, ts: int) -> list[dict]:
        self._expire(user, ts)
        sql = ("SELECT msg, status, reason, category, offset, created, delivered, acked, "
               "expires, attempts, data FROM pushes WHERE user=?")
        args: list[Any] = [user]
        if status:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY created DESC, rowid DESC LIMIT ?"
        args.append(limit)
        keys = ("msg", "status", "reason", "category", "offset", "created", "delivered",
                "acked", "expires", "attempts")
        out = []
        for row in self._db.execute(sql, args).fetchall():
            record = dict(zip(keys, row[:-1], strict=True))
            record["data"] = json.loads(row[-1])
            out.append(record)
        return out

    def _expire(self, user: str, ts: int) -> None:
        self._db.execute("UPDATE pushes SET status=? WHERE user=? AND status IN (?, ?) AND "
                         "expires IS NOT NULL AND expires<?",
                         (EXPIRED, user, PENDING, DELIVERED, ts))


def _message_row(channel: str, row: tuple) -> dict:
    offset, msg, sender, ts, data = row
    return {"channel": channel, "offset": offset, "msg": msg, "from": sender, "ts": ts,
            "data": json.loads(data)}


if TYPE_CHECKING:  # mypy proves each engine implements its contract (engines/base.py)
    from wsapp.realtime.engines.base import Store

    _SQLITESTORE: type[Store] = SQLiteStore
