"""A Flask-SocketIO app in async_mode="gevent", written as Flask-SocketIO documents it.

Events: connect with auth (a wrong token is refused with ConnectionRefusedError), "echo"
(the return value is the ack), "join"/"leave"/"to_room", "shout" (broadcast), "work" (a
background task emitting progress with socketio.sleep), "reverse" and "blob" (binary), and
"boom", whose exception goes to the default error handler. GET / is a blank page loading
the socket.io browser client from GET /socket.io-client.js (the npm package's dist file,
whose path the test passes in COMPAT_SOCKETIO_JS). GET /_events lists what happened.
"""

from __future__ import annotations

import os

from flask import Flask, request, send_file
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room, leave_room
from journal import record, snapshot

TOKEN = "let-me-in"
PAGE = ("<!doctype html><html><head><meta charset='utf-8'><title>compat</title>"
        "<script src='/socket.io-client.js'></script></head><body></body></html>")

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")


@app.route("/")
def page() -> str:
    return PAGE


@app.route("/socket.io-client.js")
def client_js():
    return send_file(os.environ["COMPAT_SOCKETIO_JS"], mimetype="text/javascript")


@app.route("/_events")
def events() -> dict:
    return snapshot()


@socketio.on("connect")
def on_connect(auth):
    if not auth or auth.get("token") != TOKEN:
        record("refused", token=(auth or {}).get("token"))
        raise ConnectionRefusedError("bad token")
    record("connect", sid=request.sid, name=auth.get("name"))


@socketio.on("disconnect")
def on_disconnect(reason):
    record("disconnect", sid=request.sid, reason=str(reason))


@socketio.on("echo")
def echo(data):
    return data


@socketio.on("join")
def join(room):
    join_room(room)
    return f"joined {room}"


@socketio.on("leave")
def leave(room):
    leave_room(room)
    return f"left {room}"


@socketio.on("to_room")
def to_room(room, text):
    emit("room_message", {"room": room, "text": text}, to=room)
    return "sent"


@socketio.on("shout")
def shout(text):
    emit("shouted", text, broadcast=True)


@socketio.on("work")
def work(steps):
    socketio.start_background_task(progress, request.sid, int(steps))
    return "started"


def progress(sid: str, steps: int) -> None:
    for step in range(1, steps + 1):
        socketio.emit("progress", {"step": step, "of": steps}, to=sid)
        socketio.sleep(0.01)
    socketio.emit("progress_done", steps, to=sid)


@socketio.on("reverse")
def reverse(blob):
    return bytes(blob)[::-1]


@socketio.on("blob")
def blob(size):
    emit("blob", {"size": size, "data": bytes(i % 256 for i in range(size))})


@socketio.on("boom")
def boom(what):
    raise ValueError(f"kaboom: {what}")


@socketio.on_error_default
def on_error(exc):
    record("error", sid=request.sid, type=type(exc).__name__, message=str(exc))
    emit("handler_error", {"type": type(exc).__name__, "message": str(exc)})
    return {"error": str(exc)}
