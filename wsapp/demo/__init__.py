"""The demo site: pages, the dashboard publisher, the task runner, /ws/echo.

A consumer of the public real-time API (`Realtime`), nothing more: it is how we prove the API
is enough. Its own state sits in app.extensions["wsapp.demo"].
"""

from __future__ import annotations

from flask import Flask

from wsapp.realtime.ext import Realtime

EXTENSION = "wsapp.demo"


def register(app: Flask, rt: Realtime) -> None:
    """Attach the demo pages and their server side to `app`, whose real-time layer is `rt`."""
    from wsapp.demo import dashboard, echo, jobs, views

    app.extensions[EXTENSION] = {"rt": rt}
    dashboard.attach(app, rt)
    app.register_blueprint(views.bp)
    app.register_blueprint(echo.bp)
    app.register_blueprint(jobs.bp)


def demo_rt(app: Flask) -> Realtime:
    """The Realtime the demo was registered with."""
    rt: Realtime = app.extensions[EXTENSION]["rt"]
    return rt
