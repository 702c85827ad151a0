"""The three feed sources as a test (or the feed benchmark) produces into them: a Redis
Stream on a redis-server we started, a RabbitMQ queue and a PostgreSQL outbox table on the
shared services, each under a name of its own, removed by `close()`.

Each source gives wsapp's `--feed` URL (optionally through a TcpProxy port, with extra
options), sends messages as an application would, and reads back its dead letters.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import amqp
import psycopg
import redis

RABBITMQ_PORT = 5672
POSTGRES_PORT = 5432
POSTGRES_URL = f"postgresql://postgres@127.0.0.1:{POSTGRES_PORT}/test"
_names = itertools.count(1)


def unique_name(prefix: str = "wsapp_feed") -> str:
    """A name no other test run uses (lower case: a PostgreSQL table name too)."""
    return f"{prefix}_{os.getpid()}_{next(_names)}_{os.urandom(3).hex()}"


def body_of(message: Any) -> str | bytes:
    """A message as sent: a dict as JSON, text or bytes as they are (poison)."""
    return message if isinstance(message, (str, bytes)) else json.dumps(message)


class RedisStreamSource:
    kind = "redis"
    invalid_json = True  # a stream entry may hold any bytes

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream = unique_name()
        self.client = redis.Redis(port=port)

    def url(self, port: int | None = None, **options: Any) -> str:
        query = urlencode({"stream": self.stream, "group": "wsapp", "claim_after": 1,
                           **options})
        return f"redis://127.0.0.1:{port or self.port}/0?{query}"

    def send(self, message: Any) -> None:
        self.client.xadd(self.stream, {"message": body_of(message)})

    def send_many(self, messages: Iterable[Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for i, message in enumerate(messages, 1):
            pipe.xadd(self.stream, {"message": body_of(message)})
            if i % 1000 == 0:
                pipe.execute()
        pipe.execute()

    def send_fields(self, fields: dict[str, str]) -> None:
        """An entry of arbitrary fields (a malformed one)."""
        self.client.xadd(self.stream, fields)

    def dead(self) -> list[tuple[str, str]]:
        return [(f.get(b"message", b"").decode(), f[b"wsapp:reason"].decode())
                for _, f in self.client.xrange(self.stream + ":dead")]

    def close(self) -> None:
        self.client.delete(self.stream, self.stream + ":dead")
        self.client.close()


class AmqpSource:
    kind = "amqp"
    invalid_json = True

    def __init__(self) -> None:
        self.queue = unique_name()
        self.conn = amqp.Connection(f"127.0.0.1:{RABBITMQ_PORT}", userid="guest",
                                    password="guest")
        self.conn.connect()
        self.channel = self.conn.channel()
        for queue in (self.queue, self.queue + ".dead"):  # before anything is sent
            self.channel.queue_declare(queue, durable=True, auto_delete=False)
        self._dead: list[tuple[str, str]] = []

    def url(self, port: int | None = None, **options: Any) -> str:
        query = urlencode({"queue": self.queue, **options})
        return f"amqp://guest:guest@127.0.0.1:{port or RABBITMQ_PORT}/?{query}"

    def send(self, message: Any, **properties: Any) -> None:
        self.channel.basic_publish(amqp.Message(body_of(message), delivery_mode=2,
                                                **properties),
                                   exchange="", routing_key=self.queue)

    def send_many(self, messages: Iterable[Any]) -> None:
        for message in messages:
            self.send(message)

    def dead(self) -> list[tuple[str, str]]:
        while True:  # basic_get takes them: keep what was read
            got = self.channel.basic_get(self.queue + ".dead", no_ack=True)
            if got is None:
                return list(self._dead)
            body = got.body.decode() if isinstance(got.body, bytes) else got.body
            self._dead.append((body, got.headers["x-wsapp-reason"]))

    def close(self) -> None:
        for queue in (self.queue, self.queue + ".dead"):
            self.channel.queue_delete(queue)
        self.conn.close()


class PostgresSource:
    kind = "postgresql"
    invalid_json = False  # the documented table's message column is jsonb

    def __init__(self) -> None:
        self.table = unique_name()
        self.conn = psycopg.connect(POSTGRES_URL, autocommit=True)
        # The DDL docs/feeds.md gives the application (wsapp adds its trigger at connect).
        self.conn.execute(f"CREATE TABLE {self.table} (id bigserial PRIMARY KEY, "
                          "message jsonb NOT NULL, created_at timestamptz NOT NULL "
                          "DEFAULT now())")

    def url(self, port: int | None = None, **options: Any) -> str:
        query = urlencode({"table": self.table, **options})
        return f"postgresql://postgres@127.0.0.1:{port or POSTGRES_PORT}/test?{query}"

    def send(self, message: Any) -> None:
        self.conn.execute(f"INSERT INTO {self.table} (message) VALUES (%s)",
                          (body_of(message),))

    def send_many(self, messages: Iterable[Any]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.table} (message) VALUES (%s)",
                            [(body_of(m),) for m in messages])

    def dead(self) -> list[tuple[str, str]]:
        return [tuple(row) for row in self.conn.execute(
            f"SELECT message, reason FROM {self.table}_dead ORDER BY id")]

    def close(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {self.table}, {self.table}_dead")
        self.conn.execute(f"DROP FUNCTION IF EXISTS {self.table}_wsapp_notify()")
        self.conn.close()


SOURCES = ("redis", "amqp", "postgresql")


def open_source(kind: str, redis_port: int) -> RedisStreamSource | AmqpSource | PostgresSource:
    """A fresh source of `kind` (the Redis one on the redis-server at `redis_port`)."""
    if kind == "redis":
        return RedisStreamSource(redis_port)
    return AmqpSource() if kind == "amqp" else PostgresSource()
