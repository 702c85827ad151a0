"""A live dashboard: the time, a place and the online count, pushed together once a second.

One greenlet publishes all three values in one message on `sys:dashboard`; it starts with
the first subscription (an on_subscribe hook), so a server nobody watches runs nothing. The
place is where the sun is highest right now: the city nearest the longitude of solar noon.

    python examples/dashboard.py [PORT]
"""

from gevent import monkey

monkey.patch_all()

import sys
import time
from datetime import datetime, timezone
from secrets import token_hex

import gevent
from flask import Flask, render_template, session
from gevent.pywsgi import WSGIServer

from wsapp import Realtime, WebSocketHandler

CHANNEL = "sys:dashboard"  # sys:*: anyone may watch, only the server publishes
CITIES = [("Auckland", 174.8), ("Sydney", 151.2), ("Tokyo", 139.7), ("Shanghai", 121.5),
          ("Bangkok", 100.5), ("Delhi", 77.2), ("Dubai", 55.3), ("Nairobi", 36.8),
          ("Athens", 23.7), ("Paris", 2.4), ("Lisbon", -9.1), ("Reykjavik", -21.9),
          ("Praia", -23.5), ("Rio de Janeiro", -43.2), ("New York", -74.0),
          ("Chicago", -87.6), ("Denver", -105.0), ("Los Angeles", -118.2),
          ("Anchorage", -149.9), ("Honolulu", -157.9)]

app = Flask(__name__)
app.config.update(SECRET_KEY=token_hex(16), WSAPP_API_KEY=token_hex(16))
rt = Realtime(app)
publisher: gevent.Greenlet | None = None


def noon_city(now: datetime) -> str:
    """The city nearest the longitude where it is solar noon at `now` (UTC)."""
    hours = now.hour + now.minute / 60 + now.second / 3600
    longitude = (12 - hours) * 15  # the sun crosses 15° of longitude an hour
    return min(CITIES, key=lambda c: abs((c[1] - longitude + 180) % 360 - 180))[0]


def publish_forever() -> None:
    while True:
        gevent.sleep(1 - time.time() % 1)  # on the second
        now = datetime.now(timezone.utc)
        rt.publish(CHANNEL, {"time": now.isoformat(timespec="seconds"),
                             "place": noon_city(now),
                             "online": rt.presence(CHANNEL)["count"]},
                   persist=False)  # a live figure: nobody replays yesterday's seconds


@rt.authenticate
def current_user():
    return session.get("user")  # each browser is one user, so "online" counts people


@rt.on_subscribe(CHANNEL)
def start_publishing(user, channel):
    global publisher
    if publisher is None or publisher.dead:
        publisher = gevent.spawn(publish_forever)
    return True


@app.route("/")
def index():
    session.setdefault("user", f"guest-{token_hex(3)}")
    return render_template("dashboard.html", client_url=rt.client_url)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"open http://127.0.0.1:{port}/", flush=True)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler).serve_forever()
