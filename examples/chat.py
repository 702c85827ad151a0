"""A chat inside an app with its own login and its own database.

The app's login (a Flask session) names the user of each WebSocket; `on_subscribe` lets a
user into a room only if the app's database says they are a member; `on_publish` checks each
message, stores it in that database and returns what everyone receives (with its row id);
and a page that opens a room — or comes back after a drop — asks the app for what it missed
(`rpc("history")`), so history comes from the app's own table, not from wsapp's.

    python examples/chat.py [PORT]    # users: alice, bob, carol; the password is the name
                                      # twice (alicealice); bob is not in #staff

The data lives in ./data/ (chat.db is the app's; wsapp keeps its own store beside it).
"""

from gevent import monkey

monkey.patch_all()

import sqlite3
import sys
import time
from pathlib import Path
from secrets import token_hex

from flask import Flask, redirect, render_template, request, session, url_for
from gevent.pywsgi import WSGIServer
from werkzeug.security import check_password_hash, generate_password_hash

from wsapp import Realtime, Reject, WebSocketHandler

DATA = Path("data")
ROOMS = {"general": ("alice", "bob", "carol"), "staff": ("alice", "carol")}
MAX_TEXT = 500

app = Flask(__name__)
app.config.update(SECRET_KEY=token_hex(16), WSAPP_API_KEY=token_hex(16), WSAPP_DATA_DIR=str(DATA))
rt = Realtime(app)
# The app stores the messages: wsapp keeps no history of its own for these channels.
rt.channel("chat:*", history_size=0)


# -- the app's own database (small, indexed queries: fine to run on the event loop) ---------

def db() -> sqlite3.Connection:
    conn = sqlite3.connect(DATA / "chat.db")
    conn.row_factory = sqlite3.Row
    return conn


def create_database() -> None:
    DATA.mkdir(exist_ok=True)
    with db() as conn:
        conn.executescript("""
            CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password TEXT);
            CREATE TABLE IF NOT EXISTS members (room TEXT, user TEXT, PRIMARY KEY (room, user));
            CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, room TEXT,
                                                 user TEXT, text TEXT, ts REAL);""")
        for room, users in ROOMS.items():
            for user in users:
                conn.execute("INSERT OR IGNORE INTO users VALUES (?, ?)",
                             (user, generate_password_hash(user * 2)))
                conn.execute("INSERT OR IGNORE INTO members VALUES (?, ?)", (room, user))


def is_member(user: str | None, room: str) -> bool:
    with db() as conn:
        return conn.execute("SELECT 1 FROM members WHERE room=? AND user=?",
                            (room, user)).fetchone() is not None


def room_of(channel: str) -> str:
    return channel.removeprefix("chat:")


# -- the real-time policy ---------------------------------------------------------------------

@rt.authenticate
def current_user():
    return session.get("user")  # None: anonymous, who may join no room


@rt.on_subscribe("chat:*")
def may_join(user, channel):
    if not is_member(user, room_of(channel)):
        raise Reject("not_member", f"you are not a member of #{room_of(channel)}")
    return True


@rt.on_publish("chat:*")
def store_message(user, channel, data):
    room = room_of(channel)
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise Reject("bad_message", 'send {"text": "..."}')
    if len(text) > MAX_TEXT:
        raise Reject("too_long", f"at most {MAX_TEXT} characters")
    if not is_member(user, room):
        raise Reject("not_member", f"you are not a member of #{room}")
    ts = time.time()
    with db() as conn:
        row = conn.execute("INSERT INTO messages (room, user, text, ts) VALUES (?, ?, ?, ?)",
                           (room, user, text.strip(), ts))
    return {"id": row.lastrowid, "text": text.strip(), "ts": ts}  # what everyone receives


@rt.rpc("history")
def history(user, params):
    """The last 50 messages of a room after the id the page has (0: the last 50)."""
    asked = params if isinstance(params, dict) else {}
    room, after = asked.get("room"), asked.get("after", 0)
    if not isinstance(room, str) or not isinstance(after, int):
        raise Reject("bad_request", 'send {"room": "general", "after": <last id seen>}')
    if not is_member(user, room):
        raise Reject("not_member", f"you are not a member of #{room}")
    with db() as conn:
        rows = conn.execute("SELECT id, user, text, ts FROM messages WHERE room=? AND id>? "
                            "ORDER BY id DESC LIMIT 50", (room, after)).fetchall()
    return [{"id": r["id"], "by": r["user"], "text": r["text"], "ts": r["ts"]}
            for r in reversed(rows)]


# -- the app's own pages ------------------------------------------------------------------------

@app.route("/", methods=["GET", "POST"])
def index():
    error = None
    if request.method == "POST":  # the login form
        name, password = request.form.get("name", ""), request.form.get("password", "")
        with db() as conn:
            row = conn.execute("SELECT password FROM users WHERE name=?", (name,)).fetchone()
        if row is not None and check_password_hash(row["password"], password):
            session["user"] = name
            return redirect(url_for("index"))
        error = "unknown user or wrong password"
    return render_template("chat.html", user=session.get("user"), rooms=sorted(ROOMS),
                           error=error, client_url=rt.client_url)


@app.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("index"))


if __name__ == "__main__":
    create_database()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"open http://127.0.0.1:{port}/", flush=True)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler).serve_forever()
