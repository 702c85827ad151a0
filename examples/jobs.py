"""A long job whose progress is pushed step by step, started by the page with an RPC.

`rpc("start_job")` starts the job in a greenlet and answers at once with its id; each step
is then published on the user's own channel `progress:<user>`, which `on_subscribe` keeps to
that user. The page draws a bar per job from those messages.

    python examples/jobs.py [PORT]
"""

from gevent import monkey

monkey.patch_all()

import sys
from secrets import token_hex

import gevent
from flask import Flask, render_template, session
from gevent.pywsgi import WSGIServer

from wsapp import Realtime, Reject, WebSocketHandler

app = Flask(__name__)
app.config.update(SECRET_KEY=token_hex(16), WSAPP_API_KEY=token_hex(16))
rt = Realtime(app)
# Progress is a live figure: not kept, no presence, no join/leave events.
rt.channel("progress:*", history_size=0, presence=False, join_leave=False)


@rt.authenticate
def current_user():
    return session.get("user")


@rt.on_subscribe("progress:*")
def only_your_own(user, channel):
    return user is not None and channel == f"progress:{user}"


@rt.rpc("start_job")
def start_job(user, params):
    steps = params.get("steps", 20) if isinstance(params, dict) else None
    if not isinstance(steps, int) or not 1 <= steps <= 100:
        raise Reject("bad_request", "steps: a whole number from 1 to 100")
    job = token_hex(4)
    gevent.spawn(run, user, job, steps)  # the RPC answers now; the job goes on
    return {"job": job, "steps": steps}


def run(user: str, job: str, steps: int) -> None:
    """The "work": a step every 0.2 s, each one pushed the moment it is done."""
    for step in range(1, steps + 1):
        gevent.sleep(0.2)
        rt.publish(f"progress:{user}", {"job": job, "step": step, "steps": steps},
                   persist=False)


@app.route("/")
def index():
    user = session.setdefault("user", f"guest-{token_hex(3)}")  # your login would name them
    return render_template("jobs.html", user=user, client_url=rt.client_url)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"open http://127.0.0.1:{port}/", flush=True)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler).serve_forever()
