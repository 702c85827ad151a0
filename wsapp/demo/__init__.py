"""The demo site: pages, the dashboard publisher, per-user task jobs, the inbox, /ws/echo.

A consumer of the public real-time API — the `Realtime` object's decorators and methods, and
the JS client served at `rt.client_url` — nothing more: it is how we prove the API is enough.
What it adds to the app is its own: two blueprints (the pages with their scripts, styles and
headers; /ws/echo), RPCs and channel rules registered on the Realtime, and its state in
app.extensions["wsapp.demo"]. Nothing app-wide: no hook, header or handler outside them.
"""

from __future__ import annotations

from flask import Flask

from wsapp.realtime.ext import Realtime

EXTENSION = "wsapp.demo"


def init_app(app: Flask, rt: Realtime) -> None:
    """Add the demo to `app`, whose real-time layer is `rt`."""
    from wsapp.demo import dashboard, echo, inbox, jobs, views

    app.extensions[EXTENSION] = {"rt": rt}
    dashboard.attach(rt)
    jobs.attach(rt)
    inbox.attach(rt)
    app.register_blueprint(views.bp)
    app.register_blueprint(echo.bp)


def demo_rt(app: Flask) -> Realtime:
    """The Realtime the demo was added with."""
    rt: Realtime = app.extensions[EXTENSION]["rt"]
    return rt


def demo_state(app: Flask) -> dict:
    """The demo's own per-app state (its publisher, its job runner)."""
    state: dict = app.extensions[EXTENSION]
    return state
