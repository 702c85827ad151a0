"""Demo pages' server side: dashboard figures, task progress jobs, chat.

The dashboard publisher starts with the app's first request (not at registration, so apps
that never serve — tests build many — run no greenlet and open no store). Task jobs are
driven over HTTP:

- `GET /api/tasks` → `{"channel": …, "jobs": [...], "limits": {...}}`: the jobs the caller
  may see and the channel their updates are published on.
- `POST /api/tasks {"steps": 20, "step_seconds": 0.25, "label": "…"}` → 201 and the job.
- `POST /api/tasks/<id>/cancel` → the job.

In demo mode (no API key) anyone may use them and every job is on the shared `sys:tasks`
board; otherwise they need `Authorization: Bearer <token>` and each user sees only their own
jobs, on a private channel named in the listing. Chat needs nothing here: it is plain
`room:*` channels on /ws.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from wsapp.demo import demo_rt
from wsapp.demo.tasks import TaskError, TaskRunner
from wsapp.realtime.auth import TokenError

bp = Blueprint("demo", __name__)



def _demo_mode() -> bool:
    """True when the server has no API key, so anyone may mint tokens."""
    return not current_app.config["WSAPP_API_KEY"]


def _caller() -> str | None:
    """The user named by the Bearer token; None in demo mode without one; else 401."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token:
        if _demo_mode():
            return None
        raise TaskError(401, "a user token is required (Authorization: Bearer <token>)")
    try:
        return demo_rt(current_app).identify(token).user
    except TokenError as exc:
        raise TaskError(401, f"unauthorized: {exc}") from None


def runner(app: Flask) -> TaskRunner:
    """The app's job runner, created on first use."""
    demo = app.extensions["wsapp.demo"]
    tasks = demo.get("tasks")
    if tasks is None:
        rt = demo_rt(app)
        # Each step carries the job's whole state and reloads refetch it: nothing to store.
        tasks = demo["tasks"] = TaskRunner(lambda ch, data: rt.publish(ch, data, persist=False))
    return tasks


def _owner(user: str | None) -> str | None:
    """Whose jobs these are: nobody's (public) in demo mode, else the caller's."""
    return None if _demo_mode() else user


@bp.errorhandler(TaskError)
def _task_error(exc: TaskError) -> tuple[Response, int]:
    return jsonify(error=str(exc)), exc.status


@bp.get("/api/tasks")
def list_tasks() -> Response:
    """The caller's visible jobs and the channel their updates arrive on."""
    user = _caller()
    owner = _owner(user)
    tasks = runner(current_app._get_current_object())
    lim = tasks.limits
    return jsonify(
        channel=tasks.channel(owner),
        jobs=[j.public() for j in tasks.visible(owner)],
        limits={"max_steps": lim.max_steps, "min_step_seconds": lim.min_step_seconds,
                "max_step_seconds": lim.max_step_seconds,
                "max_running_per_owner": lim.max_running_per_owner},
    )


@bp.post("/api/tasks")
def start_task() -> tuple[Response, int]:
    """Start a job: JSON body with optional steps, step_seconds, label."""
    user = _caller()
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise TaskError(400, "the body must be a JSON object")
    tasks = runner(current_app._get_current_object())
    job = tasks.start(_owner(user), body.get("steps", 20), body.get("step_seconds", 0.25),
                      body.get("label"), by=user)
    return jsonify(job.public()), 201


@bp.post("/api/tasks/<job_id>/cancel")
def cancel_task(job_id: str) -> Response:
    """Cancel a running job (no-op if it already ended)."""
    user = _caller()
    tasks = runner(current_app._get_current_object())
    return jsonify(tasks.cancel(job_id, _owner(user)).public())
