"""Feed URLs and feed messages, without a server: what start-up refuses (in one line) and
what is poison (with the reason the dead letter keeps)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from serverproc import ROOT, clean_env

from wsapp.config import from_env
from wsapp.realtime.feeds import check_feed_url, feed_urls, open_feed
from wsapp.realtime.feeds.message import FeedMessage, Poison, parse_message


@pytest.mark.parametrize("url,expected", [
    ("kafka://h:9092/t", "use redis://HOST:PORT/DB?stream=S&group=G"),
    ("redis://h:6379/0?group=g", "needs ?stream=NAME"),
    ("redis://h:6379/0?stream=s", "needs ?group=NAME"),
    ("redis://h/0?stream=s&group=g&claim_after=0", "claim_after must be seconds > 0"),
    ("amqp://u:secret@h/?prefetch=5", "needs ?queue=NAME"),
    ("amqp://u:p@h/?queue=q&prefetch=-1", "prefetch must be a whole number"),
    ("postgresql://u@h/db", "needs ?table=NAME"),
    ("postgresql://u@h/db?table=drop;table", "is not a plain SQL name"),
    ("postgres://u@h/db?table=t&poll=0", "poll must be seconds"),
    ("redis://h/0?stream=s&group=g&batch=0", "batch must be 1..10000"),
    ("amqp://u:p@h/?queue=q&timeout=x", "batch must be a whole number and timeout seconds"),
])
def test_a_bad_feed_url_is_one_clear_line(url, expected):
    with pytest.raises(ValueError, match="^feed ") as info:
        check_feed_url(url)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert "secret" not in str(info.value)  # passwords never reach a log


def test_each_scheme_picks_its_source_with_its_options():
    redis_feed = open_feed("redis://127.0.0.1:6379/2?stream=orders&group=web&claim_after=5")
    assert (redis_feed.kind, redis_feed.name, redis_feed.dead_letters) == (
        "redis", "redis:orders", "orders:dead")
    assert redis_feed.claim_after_ms == 5000 and redis_feed.url == "redis://127.0.0.1:6379/2"
    amqp_feed = open_feed("amqp://me:pw%40x@mq:5673/prod?queue=q&prefetch=50&dead=q.bad")
    assert (amqp_feed.host, amqp_feed.user, amqp_feed.password, amqp_feed.vhost) == (
        "mq:5673", "me", "pw@x", "prod")
    assert (amqp_feed.prefetch, amqp_feed.dead_letters, amqp_feed.batch) == (50, "q.bad", 200)
    assert open_feed("amqp://h/?queue=q").vhost == "/"
    pg_feed = open_feed("postgresql://u@db/app?table=app.outbox&sslmode=disable&timeout=3")
    assert (pg_feed.table, pg_feed.dead_letters, pg_feed.channel, pg_feed.timeout) == (
        "app.outbox", "app.outbox_dead", "wsapp_outbox", 3.0)
    assert pg_feed.conninfo == "postgresql://u@db/app?sslmode=disable"


def test_feeds_come_comma_separated_from_the_environment():
    urls = "redis://h/0?stream=a&group=g, amqp://h/?queue=b"
    assert feed_urls(urls) == ["redis://h/0?stream=a&group=g", "amqp://h/?queue=b"]
    assert from_env({"WSAPP_FEED": urls, "WSAPP_KEY_TTL": "60"}).key_ttl == 60
    with pytest.raises(ValueError, match="needs \\?queue=NAME"):
        from_env({"WSAPP_FEED": "amqp://h/"})


def test_the_server_refuses_a_bad_feed_at_start_in_one_line():
    result = subprocess.run([sys.executable, str(ROOT / "serve.py"), "--feed",
                             "postgresql://u@h/db"], capture_output=True, text=True,
                            timeout=30, env=clean_env())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "serve.py: error: --feed postgresql://u@h/db: needs ?table=NAME",
        "Run 'serve.py --help' to see every flag."]


def test_a_missing_client_library_names_the_extra_to_install():
    # sys.modules[name] = None is Python's own "this module is absent" (find_spec: None).
    probe = (
        "import sys; sys.modules['amqp'] = None\n"
        "from wsapp.realtime.feeds import check_feed_url\n"
        "try: check_feed_url('amqp://h/?queue=q')\n"
        "except ValueError as e: print(e)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=30, env=clean_env())
    assert result.stdout.strip() == ("feed amqp://h/?queue=q: needs the amqp package "
                                     "(pip install 'wsapp[amqp]')"), result.stderr


LIMIT = 100


def parse(doc) -> FeedMessage:
    return parse_message(doc if isinstance(doc, (str, bytes)) else
                         __import__("json").dumps(doc), LIMIT)


def test_valid_messages():
    assert parse({"op": "push", "user": "ann", "data": {"a": 1}, "category": "promo",
                  "ttl": 30, "key": "k"}) == FeedMessage("push", "ann", {"a": 1}, "promo", 30,
                                                         "k")
    assert parse(b'{"op":"publish","channel":"room:x","data":null}') == FeedMessage(
        "publish", "room:x", None)
    # null is absent for the optional fields, as in the HTTP API
    assert parse({"op": "push", "user": "ann", "data": 1, "ttl": None, "category": None,
                  "key": None}) == FeedMessage("push", "ann", 1)


@pytest.mark.parametrize("body,reason", [
    (b"\xff\xfe", "not UTF-8 text"),
    ("x" * (LIMIT + 4097), "message is 4197 bytes; the limit is 4196"),
    ('"just a string"', "a message must be a JSON object, not str"),
    ("[" * 3000, "not valid JSON"),  # nested past the recursion limit
    ('{"op": "push", "user": "ann", "data": NaN}', "NaN is not JSON"),
    ('{"op": "push", "user": "ann", "data": "\\ud800"}', "lone surrogate"),
    ('{"op": "push", "user": "ann", "data": [1e999]}', "1e999 is not JSON"),
    ({"op": "push", "user": "ann", "data": 1, "ttl": 1e400}, "Infinity is not JSON"),
    ({"op": "push", "user": "ann", "data": 1, "ttl": True}, "'ttl' must be seconds"),
    ({"op": "push", "user": "ann", "data": 1, "key": ""}, "'key' must be a string of 1-200"),
    ({"op": "push", "user": "ann", "data": 1, "key": 7}, "'key' must be a string"),
    ({"op": "publish", "channel": 5, "data": 1}, "'channel' must be a string"),
    ({"op": "push", "user": None, "data": 1}, "'user' must be 1-64 characters"),
    ({"op": None, "data": 1}, "missing field 'op'"),
], ids=lambda value: str(value)[:40])
def test_poison_says_why(body, reason):
    with pytest.raises(Poison) as info:
        parse(body)
    assert reason in info.value.reason
