"""Realtime inside a host app with its own pages, login and database (apps/host_app.py),
served by a plain gevent WSGIServer with wsapp's handler: every hook allowing and refusing,
Reject codes, exceptions in hooks and RPCs, RPC with and without a handler, the server-side
operations, channel options, JWTs from another service, and a host app left as it was."""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import gevent
import jwt
import pytest
import websocket
from flask import Flask

from realtime.helpers import TIMEOUT, Client, Closed, RealtimeServer
from wsapp import Realtime

HOST_APP = Path(__file__).resolve().parent / "apps" / "host_app.py"
SECRET = "host-app-jwt-secret-of-32-bytes!!"
KEY = {"Authorization": "Bearer host-key"}


class HostServer(RealtimeServer):
    """The host app in a subprocess (its real-time layer under /rt)."""

    prefix = "/rt"

    def argv(self) -> list[str]:
        (self.workdir / "data").mkdir(exist_ok=True)
        return [sys.executable, str(HOST_APP), str(self.port), str(self.workdir / "data")]

    def login(self, user: str) -> str:
        """The host's session cookie for `user`."""
        status, headers, _ = self.http("GET", f"/login?user={user}")
        assert status == 200
        return headers["set-cookie"].split(";")[0]

    def open(self, *, cookie: str | None = None, query: str = "",
             read_welcome: bool = True) -> Client:
        header = [f"Cookie: {cookie}"] if cookie else []
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/rt/ws{query}",
                                         timeout=TIMEOUT, header=header)
        client = Client(ws, read_welcome=read_welcome)
        self.clients.append(client)
        return client

    def as_user(self, user: str) -> Client:
        return self.open(cookie=self.login(user))

    def admin(self, op: str, **args: str) -> dict:
        status, _, body = self.http("POST", f"/admin/{op}", args)
        assert status == 200, body
        return json.loads(body)

    def events(self) -> dict:
        return json.loads(self.http("GET", "/events")[2])


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    server = HostServer(tmp_path_factory.mktemp("host"), [])
    server.spawn().wait_ready()
    yield server
    for client in server.clients:
        client.close()
    server.stop()


def closed_with(client: Client) -> Closed:
    with pytest.raises(Closed) as info:
        client.recv()
    return info.value


# -- the host app stays as it was ----------------------------------------------------------

def test_the_host_apps_pages_404_and_headers_are_its_own(host):
    status, headers, body = host.http("GET", "/")
    assert status == 200 and headers["x-host"] == "yes" and b"host home" in body
    assert "content-security-policy" not in headers  # the extension sets no app-wide header
    status, _, body = host.http("GET", "/no/such/page")
    assert (status, body) == (404, b"host 404 page")
    status, headers, body = host.http("GET", "/rt/api/nope")  # its own 404 is JSON, scoped
    assert status == 404 and json.loads(body)["error"] == "not_found"
    assert host.http("GET", "/rt/wsapp.js")[1]["content-type"].startswith("text/javascript")


def test_registering_starts_nothing_and_keeps_one_extension_key(tmp_path):
    app = Flask("host")
    app.config.update(WSAPP_DATA_DIR=str(tmp_path), WSAPP_URL_PREFIX="/rt")

    @app.route("/")
    def home():
        return "home"

    def greenlets() -> set[int]:
        return {id(o) for o in gc.get_objects() if issubclass(type(o), gevent.Greenlet)}

    # compared as sets: one an earlier test left (a log writer) may end meanwhile
    existing = greenlets()
    before = set(app.extensions)
    rt = Realtime(app)
    assert set(app.extensions) - before == {"wsapp"}
    assert app.test_client().get("/").data == b"home"
    assert app.test_client().get("/nope").status_code == 404
    state = app.extensions["wsapp"]
    assert state.hub.engines.opened() == {} and state.hub._pipeline is None
    assert not greenlets() - existing  # no greenlet started
    assert not any(tmp_path.iterdir())  # no database, no secret written
    with app.app_context():
        assert rt.client_url == "/rt/wsapp.js"
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {"/", "/rt/ws", "/rt/api/publish", "/rt/metrics", "/rt/healthz",
            "/rt/wsapp.js"} <= rules
    assert all(r == "/" or r.startswith(("/rt/", "/static/")) for r in rules), rules


def test_factory_style_one_realtime_several_apps(tmp_path):
    rt = Realtime()
    apps = [Flask(f"a{i}") for i in range(2)]
    for i, app in enumerate(apps):
        app.config["WSAPP_DATA_DIR"] = str(tmp_path / str(i))
        rt.init_app(app)
    hubs = [app.extensions["wsapp"].hub for app in apps]
    assert hubs[0] is not hubs[1]
    with apps[1].app_context():
        assert rt.state().hub is hubs[1]
    with pytest.raises(RuntimeError, match="2 apps"):
        rt.state()  # no app context: ambiguous
    bad = Flask("bad")
    bad.config.update(WSAPP_HISTORY_SIZE=0)
    with pytest.raises(ValueError, match="history_size"):  # a bad setting: at init_app
        Realtime(bad)
    bad.config.update(WSAPP_HISTORY_SIZE=10, WSAPP_CHANNELS={"chat:*": {"colour": "red"}})
    with pytest.raises(ValueError, match="channels"):
        Realtime(bad)


# -- authenticate ----------------------------------------------------------------------------

def test_authenticate_reads_the_host_session(host):
    assert host.as_user("alice").welcome["user"] == "alice"
    assert host.open().welcome["user"] is None  # no session, no token: anonymous


def test_authenticate_refusing_closes_with_the_reject(host):
    info = closed_with(host.open(query="?refuse=1", read_welcome=False))
    assert (info.code, info.reason) == (4401, "refused by the host app")


def test_on_connect_refusing_closes_4403_and_hooks_see_connect_and_disconnect(host):
    info = closed_with(host.open(cookie=host.login("banned"), read_welcome=False))
    assert (info.code, info.reason) == (4403, "banned user")
    carol = host.as_user("carol")
    conn = carol.welcome["conn"]
    carol.close()
    deadline = time.monotonic() + TIMEOUT
    while ["disconnect", "carol", conn] not in host.events()["events"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ["connect", "carol", conn] in host.events()["events"]


# -- on_subscribe ----------------------------------------------------------------------------

def test_on_subscribe_allows_refuses_and_rejects_with_its_code(host):
    alice, dave = host.as_user("alice"), host.as_user("dave")
    alice.ok("subscribe", channel="chat:general")
    dave.expect_error(dave.request("subscribe", channel="chat:general"), "forbidden")
    dave.expect_error(dave.request("subscribe", channel="chat:vip"), "not_member")
    reply = dave.request("subscribe", channel="chat:vip")
    assert reply["reason"] == "the VIP room is for members"
    alice.ok("subscribe", channel="chat:vip")
    dave.expect_error(dave.request("subscribe", channel="nope:x"), "bad_channel")


def test_an_exception_in_a_hook_is_an_internal_error_logged_and_the_connection_stays(host):
    alice = host.as_user("alice")
    alice.expect_error(alice.request("subscribe", channel="chat:boom"), "internal_error")
    host.wait_for_log(r"RuntimeError: the membership check crashed")
    alice.ok("subscribe", channel="chat:general")


# -- on_publish ------------------------------------------------------------------------------

def test_on_publish_validates_transforms_and_stores_in_the_apps_database(host):
    alice, bob = host.as_user("alice"), host.as_user("bob")
    bob.ok("subscribe", channel="chat:general")
    alice.ok("subscribe", channel="chat:general")
    reply = alice.ok("publish", channel="chat:general", data={"text": "  hello  "})
    assert reply["offset"] >= 1
    got = bob.wait_for(lambda f: f.get("op") == "message")
    assert got["data"] == {"text": "hello", "by": "alice"} and got["from"] == "alice"
    assert ["chat:general", "alice", "  hello  "] in host.events()["stored"]
    alice.expect_error(alice.request("publish", channel="chat:general", data=5),
                       "bad_message")
    alice.expect_error(alice.request("publish", channel="chat:general",
                                     data={"text": "crash"}), "app_error")  # on_error


def test_anonymous_users_and_channels_without_a_publish_hook(host):
    anon = host.open()
    anon.expect_error(anon.request("publish", channel="chat:general", data={"text": "x"}),
                      "unauthorized")
    anon.expect_error(anon.request("subscribe", channel="room:lobby"), "unauthorized")
    alice = host.as_user("alice")
    alice.expect_error(alice.request("publish", channel="sys:news", data=1), "forbidden")


# -- channel options ---------------------------------------------------------------------------

def test_channel_options_anonymous_presence_join_leave_history(host):
    anon, alice, bob = host.open(), host.as_user("alice"), host.as_user("bob")
    anon.ok("subscribe", channel="ann:news")  # anonymous allowed there
    alice.ok("subscribe", channel="ann:news")
    alice.expect_error(alice.request("presence", channel="ann:news"), "forbidden")
    bob.ok("subscribe", channel="ann:news")
    assert not [e for e in alice.sync() if e.get("op") in ("join", "leave")]  # join_leave off
    alice.ok("subscribe", channel="room:r")
    bob.ok("subscribe", channel="room:r")
    assert alice.wait_for(lambda f: f.get("op") == "join")["user"] == "bob"  # room: default
    host.admin("subscribe", user="alice", channel="quiet:x")
    alice.wait_for(lambda f: f.get("op") == "subscribed")
    status, _, body = host.http("POST", "/rt/api/publish", {"channel": "quiet:x", "data": 1},
                                KEY)
    assert status == 200 and json.loads(body)["offset"] is None  # history_size 0: not stored
    assert alice.wait_for(lambda f: f.get("op") == "message")["data"] == 1  # but delivered
    # chat:* keeps 50 messages, the settings 1000: a replay brings back the channel's own
    for n in range(60):
        host.http("POST", "/rt/api/publish", {"channel": "chat:long", "data": n}, KEY)
    status, _, body = host.http("GET", "/rt/api/history?channel=chat:long&limit=1000",
                                headers=KEY)
    kept = json.loads(body)
    assert [m["data"] for m in kept["messages"]] == list(range(10, 60))
    assert kept["first_offset"] == 11


# -- RPC ---------------------------------------------------------------------------------------

def test_rpc_with_and_without_a_handler(host):
    alice = host.as_user("alice")
    assert alice.ok("rpc", method="echo", params={"n": [1, 2]})["result"] == {
        "user": "alice", "params": {"n": [1, 2]}}
    assert alice.ok("rpc", method="echo")["result"]["params"] is None
    alice.expect_error(alice.request("rpc", method="nope"), "unknown_method")


def test_rpc_runs_with_the_hosts_request_context(host):
    bob = host.as_user("bob")
    assert bob.ok("rpc", method="whoami")["result"] == {
        "user": "bob", "session_user": "bob", "path": "/rt/ws"}


def test_an_rpc_that_raises_answers_internal_error_logs_and_the_connection_stays(host):
    alice = host.as_user("alice")
    alice.expect_error(alice.request("rpc", method="boom"), "internal_error")
    host.wait_for_log(r"ValueError: the RPC crashed")
    alice.expect_error(alice.request("rpc", method="app_error"), "app_error")
    assert alice.ok("rpc", method="echo", params=1)["result"]["params"] == 1


def test_a_slow_rpc_blocks_neither_its_connection_nor_anyone_else(host):
    alice, bob = host.as_user("alice"), host.as_user("bob")
    started = time.monotonic()
    alice.send({"op": "rpc", "id": "slow", "method": "slow", "params": 2})
    assert alice.request("ping", t=1)["op"] == "pong"  # same connection, answered meanwhile
    assert bob.request("ping", t=1)["op"] == "pong"
    assert time.monotonic() - started < 1.5
    assert alice.reply_to("slow")["result"] == "done"


# -- server-side operations ------------------------------------------------------------------

def test_server_side_subscribe_unsubscribe_close_channel_disconnect(host):
    alice, bob = host.as_user("alice"), host.as_user("bob")
    host.admin("subscribe", user="alice", channel="sys:alerts")
    event = alice.wait_for(lambda f: f.get("op") == "subscribed")
    assert event == {"op": "subscribed", "channel": "sys:alerts", "offset": 0, "server": True}
    host.http("POST", "/rt/api/publish", {"channel": "sys:alerts", "data": "hi"}, KEY)
    assert alice.wait_for(lambda f: f.get("op") == "message")["data"] == "hi"
    host.admin("unsubscribe", user="alice", channel="sys:alerts")
    assert alice.wait_for(lambda f: f.get("op") == "unsubscribed") == {
        "op": "unsubscribed", "channel": "sys:alerts", "reason": "removed by an admin"}
    alice.expect_error(alice.request("unsubscribe", channel="sys:alerts"), "not_subscribed")
    for c in (alice, bob):
        c.ok("subscribe", channel="room:closing")
    host.admin("close_channel", channel="room:closing")
    for c in (alice, bob):
        event = c.wait_for(lambda f: f.get("op") == "unsubscribed")
        assert event["channel"] == "room:closing" and event["reason"] == "closed by an admin"
    host.admin("disconnect", user="bob")
    info = closed_with(bob)
    assert (info.code, info.reason) == (4001, "kicked by an admin")
    alice.sync()  # others stay


# -- tokens from another service ---------------------------------------------------------------

def jwt_for(payload: dict, key=SECRET, algorithm="HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def claims(**extra) -> dict:
    return {"sub": "erin", "exp": int(time.time()) + 60, "iat": int(time.time()), **extra}


def test_a_jwt_minted_by_another_service_names_the_user(host):
    client = host.open(query=f"?token={jwt_for(claims())}")
    assert client.welcome["user"] == "erin"
    granted = host.open(query=f"?token={jwt_for(claims(channels=['user:frank']))}")
    granted.ok("subscribe", channel="user:frank")  # a grant opens even a personal channel


@pytest.mark.parametrize("token,reason", [
    (jwt_for(claims(), key="another-secret-of-at-least-32-bytes"), "bad signature"),
    (jwt.encode(claims(), None, algorithm="none"), "algorithm not allowed"),
    (jwt_for(claims(exp=int(time.time()) - 60)), "token expired"),
    (jwt_for({"exp": int(time.time()) + 60}), "no 'sub' claim"),
    ("not-a-jwt", "malformed token"),
])
def test_bad_jwts_are_refused_with_4401_and_a_reason(host, token, reason):
    info = closed_with(host.open(query=f"?token={token}", read_welcome=False))
    assert info.code == 4401 and reason in info.reason, info


def test_revoked_tokens_are_refused_and_their_connections_closed(host):
    token = jwt_for(claims(sub="gina", iat=int(time.time()) - 5))
    gina = host.open(query=f"?token={token}")
    host.admin("revoke", user="gina")
    assert closed_with(gina).code == 4401
    info = closed_with(host.open(query=f"?token={token}", read_welcome=False))
    assert info.code == 4401 and "revoked" in info.reason
    time.sleep(1.1)  # a token issued after the revocation's second is good again
    assert host.open(query=f"?token={jwt_for(claims(sub='gina'))}").welcome["user"] == "gina"


def test_records_and_demo_mode_on_the_realtime_object(tmp_path):
    app = Flask("records")
    app.config.update(WSAPP_DATA_DIR=str(tmp_path))
    rt = Realtime(app)
    with app.app_context():
        assert rt.demo is True  # no API key
        assert rt.records("ivy") == []
        pushed = rt.push("ivy", {"text": "while you were away"}, category="news")
        assert pushed["status"] == "stored"
        [record] = rt.records("ivy")
        assert (record["msg"], record["status"], record["category"], record["data"]) == (
            pushed["msg"], "pending", "news", {"text": "while you were away"})
        assert rt.records("ivy", status="acked") == []
        for bad in ({"status": "read"}, {"limit": 0}):
            with pytest.raises(ValueError):
                rt.records("ivy", **bad)
        with pytest.raises(ValueError, match="user"):
            rt.records("no spaces")
    keyed = Flask("keyed")
    keyed.config.update(WSAPP_DATA_DIR=str(tmp_path / "k"), WSAPP_API_KEY="k")
    assert Realtime(keyed).demo is False  # the only app it serves: no context needed
