"""A host application with its own pages, its own login and its own database, into which
wsapp's real-time layer is mounted with `Realtime(app)` — what test_extension.py drives.

Run: python tests/realtime/apps/host_app.py PORT DATA_DIR
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from flask import Flask, jsonify, make_response, request, session  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from wsapp import Realtime, Reject, WebSocketHandler  # noqa: E402

app = Flask(__name__)
app.config.update(
    SECRET_KEY="host-app-secret",
    WSAPP_URL_PREFIX="/rt",
    WSAPP_API_KEY="host-key",
    WSAPP_SECRET="host-app-jwt-secret-of-32-bytes!!",
    WSAPP_DATA_DIR=sys.argv[2] if len(sys.argv) > 2 else "data",
    WSAPP_CHANNELS={"chat:*": {"history_size": 50},
                    "ann:*": {"anonymous": True, "presence": False, "join_leave": False},
                    "quiet:*": {"history_size": 0}},
)
rt = Realtime(app)

MEMBERS = {"chat:general": {"alice", "bob"}, "chat:vip": {"alice"}}
EVENTS: list[list] = []  # what the hooks saw, for the tests to read back


class AppError(Exception):
    """An exception of the app's own, mapped by on_error."""


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(f"{app.config['WSAPP_DATA_DIR']}/host.db")
    conn.execute("CREATE TABLE IF NOT EXISTS chat (channel TEXT, author TEXT, text TEXT)")
    return conn


# -- the host's own pages and login -------------------------------------------------------

@app.route("/")
def home():
    resp = make_response("<h1>host home</h1>")
    resp.headers["X-Host"] = "yes"
    return resp


@app.route("/login")
def login():
    session["user"] = request.args["user"]
    return "logged in"


@app.errorhandler(404)
def not_found(exc):
    return "host 404 page", 404


@app.route("/events")
def events():
    with db() as conn:
        stored = conn.execute("SELECT channel, author, text FROM chat").fetchall()
    return jsonify(events=EVENTS, stored=stored)


@app.route("/admin/<op>", methods=["POST"])
def admin(op):
    """The host's own admin actions, through rt's server-side API."""
    args = request.get_json()
    if op == "subscribe":
        rt.subscribe(args["user"], args["channel"])
    elif op == "unsubscribe":
        rt.unsubscribe(args["user"], args["channel"], "removed by an admin")
    elif op == "close_channel":
        rt.close_channel(args["channel"], "closed by an admin")
    elif op == "disconnect":
        rt.disconnect(args["user"], 4001, "kicked by an admin")
    elif op == "revoke":
        rt.revoke_tokens(args["user"])
    elif op == "presence":
        return jsonify(rt.presence(args["channel"]), online=rt.is_online(args["user"]))
    elif op == "push":
        return jsonify(rt.push(args["user"], args["data"]))
    return jsonify(ok=True)


# -- the real-time policy ------------------------------------------------------------------

@rt.authenticate
def identify():
    if request.args.get("refuse"):
        raise Reject("unauthorized", "refused by the host app")
    if "user" in session:
        return session["user"]
    return rt.identify(request.args.get("token"))  # a JWT, with its grants (None: anonymous)


@rt.on_subscribe("chat:*")
def may_join(user, channel):
    if channel == "chat:boom":
        raise RuntimeError("the membership check crashed")
    if channel == "chat:vip" and user not in MEMBERS["chat:vip"]:
        raise Reject("not_member", "the VIP room is for members")
    return user in MEMBERS.get(channel, set())


@rt.on_publish("chat:*")
def check_message(user, channel, data):
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise Reject("bad_message", "send {\"text\": \"...\"}")
    if data["text"] == "crash":
        raise AppError("the app refused this text")
    with db() as conn:
        conn.execute("INSERT INTO chat VALUES (?, ?, ?)", (channel, user, data["text"]))
    return {"text": data["text"].strip(), "by": user}


@rt.rpc("echo")
def echo(user, params):
    return {"user": user, "params": params}


@rt.rpc("whoami")
def whoami(user, params):
    # runs with the handshake's request context: the host's session is there
    return {"user": user, "session_user": session.get("user"), "path": request.path}


@rt.rpc("boom")
def boom(user, params):
    raise ValueError("the RPC crashed")


@rt.rpc("app_error")
def app_error(user, params):
    raise AppError("an error of the app's own")


@rt.rpc("slow")
def slow(user, params):
    gevent.sleep(float(params))
    return "done"


@rt.on_error(AppError)
def map_app_error(exc):
    return Reject("app_error", str(exc))


@rt.on_connect
def connected(user, conn):
    if user == "banned":
        raise Reject("forbidden", "banned user")
    EVENTS.append(["connect", user, conn.id])


@rt.on_disconnect
def disconnected(user, conn):
    EVENTS.append(["disconnect", user, conn.id])


if __name__ == "__main__":
    port = int(sys.argv[1])
    print(json.dumps({"listening": port}), flush=True)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler).serve_forever()
