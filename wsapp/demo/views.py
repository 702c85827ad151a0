"""The demo's pages: one blueprint with its templates, scripts and styles, and the headers
its pages carry.

Pages import the JS client by the bare name "wsapp", which an import map in base.html maps
to `rt.client_url`: the page scripts stay static files, yet follow WSAPP_URL_PREFIX. The
import map is the one inline script; the Content-Security-Policy allows it by its sha256
hash (computed from the very text rendered) and nothing else inline. That policy and nosniff
are set by this blueprint's after_request, so they reach the demo's own responses only, never
the rest of a host app.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from flask import Blueprint, Response, current_app, render_template, request

from wsapp.demo import demo_rt

_PACKAGE = Path(__file__).resolve().parent


def template_folder() -> Path:
    """The demo's templates: the copy an installed wheel carries inside the package (the
    build maps `templates/` there), else `templates/` at the top of a checkout.

    The packaged copy is looked for first: installed, the folder beside the package is
    site-packages, where another distribution may have dropped a `templates/` of its own.
    """
    packaged = _PACKAGE / "templates"
    return packaged if packaged.is_dir() else _PACKAGE.parent.parent / "templates"


# Its files under /demo/static: a host app's own /static stays its own.
bp = Blueprint("demo", __name__, static_folder="static", static_url_path="/demo/static",
               template_folder=str(template_folder()))

PAGES = [
    ("/echo", "Echo", "type a message, see it echoed, with each message's round-trip time"),
    ("/dashboard", "Dashboard", "server clock, who is online, messages per second — pushed live"),
    ("/tasks", "Task progress", "start long jobs by RPC and watch every step arrive as it happens"),
    ("/chat", "Chat", "rooms with their recent history, nicknames and presence"),
    ("/console", "Push console",
     "send to everyone, a room or a user and watch each push go delivered → acked"),
    ("/inbox", "Inbox", "a user's side of the console: personal messages, acked once shown"),
]

# Pages load only our own scripts (and the import map, by its hash) and styles, and talk only
# to this host: 'self' in connect-src covers ws:// and wss:// to the page's own host and port
# (CSP Level 3, every current browser; tests/e2e checks it in Chromium), so a script injected
# into a page could not send anything elsewhere.
CSP = ("default-src 'self'; script-src 'self' '{importmap}'; style-src 'self' 'unsafe-inline'; "
       "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")


def importmap() -> str:
    """The import map's text: "wsapp" is the JS client wherever the extension serves it."""
    text = json.dumps({"imports": {"wsapp": demo_rt(current_app).client_url}})
    return text.replace("<", "\\u003c")  # it sits inside <script>: never a closing tag


def script_hash(text: str) -> str:
    """A CSP hash source for an inline script's exact text."""
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


@bp.after_request
def security_headers(resp: Response) -> Response:
    """The demo's own responses: a Content-Security-Policy on its pages, nosniff on all."""
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Content-Security-Policy",
                                CSP.format(importmap=script_hash(importmap())))
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


@bp.context_processor
def page_context() -> dict:
    """What base.html needs on every page: links, the import map, the mode, where tokens are
    minted (for the sign-in help when the server has an API key)."""
    rt = demo_rt(current_app)
    api = rt.client_url.rsplit("/", 1)[0] + "/api/tokens"  # the client's folder: /ws, /api
    return {"nav_pages": PAGES, "importmap": importmap(), "demo": rt.demo,
            "token_url": request.host_url.rstrip("/") + api}


def page(path: str, template: str, doc: str) -> None:
    """Serve `template` at `path`."""
    def view() -> str:
        return render_template(template, pages=PAGES)

    view.__doc__ = doc
    bp.add_url_rule(path, template.removesuffix(".html"), view)


page("/", "index.html", "The list of demo pages.")
page("/echo", "echo.html", "The echo demo: a raw WebSocket on /ws/echo.")
page("/dashboard", "dashboard.html", "Live server figures pushed on sys:dashboard.")
page("/tasks", "tasks.html", "Long jobs started by RPC, with live progress.")
page("/chat", "chat.html", "Chat rooms with history and presence.")
page("/console", "console.html", "The push console: send through the HTTP API, follow each push.")
page("/inbox", "inbox.html", "A user's inbox: push records, then personal messages live.")
