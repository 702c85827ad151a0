"""Add wsapp to your Flask app: your login names the user, your code answers the page.

    python examples/quickstart.py [PORT]     # then open the address it prints
"""

from gevent import monkey

monkey.patch_all()  # first of all: every socket in the process must cooperate with gevent

import sys
from secrets import token_hex

from flask import Flask, render_template_string, session
from gevent.pywsgi import WSGIServer

from wsapp import Realtime, WebSocketHandler

app = Flask(__name__)
app.config["SECRET_KEY"] = token_hex(16)     # your app's own session cookie
app.config["WSAPP_API_KEY"] = token_hex(16)  # every WSAPP_* setting lives here; a key: no demo mode
rt = Realtime(app)  # adds /ws, /api/..., /wsapp.js; nothing else in your app changes


@rt.authenticate  # runs in the WebSocket handshake's request: your login names the user
def current_user():
    return session.get("user")


@rt.rpc("shout")  # the page calls `await client.rpc("shout", text)`
def shout(user, text):
    rt.publish("room:lobby", {"by": user, "text": str(text).upper()})
    return "shouted"


@app.route("/")
def index():
    session.setdefault("user", f"guest-{token_hex(3)}")  # stands in for your real login
    return render_template_string(PAGE, client_url=rt.client_url)


PAGE = """<!doctype html>
<title>wsapp quickstart</title>
<input id="text" placeholder="say something and press Enter">
<ul id="said"></ul>
<script type="module">
  import { WsClient } from "{{ client_url }}";
  const $ = (id) => document.getElementById(id);
  const client = new WsClient({ token: () => null });  // no token: the cookie names us
  client.subscribe("room:lobby", ({ by, text }) => {
    const li = document.createElement("li");
    li.textContent = `${by}: ${text}`;  // text, never HTML
    $("said").append(li);
  });
  client.connect();
  $("text").onchange = async () => {
    await client.rpc("shout", $("text").value);
    $("text").value = "";
  };
</script>
"""

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"open http://127.0.0.1:{port}/", flush=True)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler).serve_forever()
