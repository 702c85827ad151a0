"""The demo's HTML pages."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

bp = Blueprint("pages", __name__)

PAGES = [
    ("/echo", "Echo", "type a message, see it echoed, watch the round-trip latency"),
    ("/dashboard", "Dashboard", "server clock, who is online, messages per second — pushed live"),
    ("/tasks", "Task progress", "start long jobs and watch every step arrive as it happens"),
    ("/chat", "Chat", "rooms, nicknames and presence between tabs and browsers"),
    ("/console", "Push console",
     "send to everyone, a room or a user and watch each push go delivered → acked"),
    ("/inbox", "Inbox", "a user's side of the console: personal messages, acked once shown"),
]

# Pages load only our own script and styles, and talk only to this host.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'")


@bp.after_app_request
def security_headers(resp: Response) -> Response:
    """Every HTML page gets a Content-Security-Policy."""
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


@bp.app_context_processor
def nav() -> dict:
    """The header's page links, on every template."""
    return {"nav_pages": PAGES}


@bp.route("/")
def index() -> str:
    """The list of demo pages."""
    return render_template("index.html", pages=PAGES)


@bp.route("/echo")
def echo_page() -> str:
    """The echo demo."""
    return render_template("echo.html")


@bp.route("/dashboard")
def dashboard_page() -> str:
    """Live server figures pushed on sys:dashboard."""
    return render_template("dashboard.html")


@bp.route("/tasks")
def tasks_page() -> str:
    """Long jobs with live progress."""
    return render_template("tasks.html")


@bp.route("/chat")
def chat_page() -> str:
    """Chat rooms with presence."""
    return render_template("chat.html")


@bp.route("/console")
def console_page() -> str:
    """The push console: send through the HTTP API, follow each push's status."""
    return render_template("console.html")


@bp.route("/inbox")
def inbox_page() -> str:
    """A user's inbox: personal messages, acked after they are shown."""
    return render_template("inbox.html")

