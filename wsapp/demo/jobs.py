"""The task page's server side, on the public API only: three RPCs and a channel rule.

    client.rpc("start_job", {"steps": 20, "step_seconds": 0.25, "label": "…"}) → the job
    client.rpc("cancel_job", {"id": "…"})                                      → the job
    client.rpc("list_jobs")   → {"channel": "tasks:<you>", "jobs": [...], "limits": {...}}

The caller is the connection's user, so every job has a real owner: only they list, cancel
and watch it (`tasks:<user>`, guarded by an on_subscribe hook), and the running-job cap is
theirs alone. Connections without a user are refused with `unauthorized` and a hint to sign
in. Refusals are TaskErrors, mapped to their error code by an on_error handler.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from wsapp.demo import demo_state
from wsapp.demo.tasks import NAMESPACE, TaskError, TaskRunner
from wsapp.realtime.exceptions import Reject
from wsapp.realtime.ext import Realtime


def runner(rt: Realtime) -> TaskRunner:
    """The current app's job runner, created on first use."""
    demo = demo_state(current_app)
    tasks = demo.get("tasks")
    if tasks is None:
        # Each step carries the job's whole state and the page lists the jobs again after
        # every (re)subscribe: there is nothing to replay, so nothing is stored.
        tasks = demo["tasks"] = TaskRunner(lambda ch, data: rt.publish(ch, data, persist=False))
    return tasks


def _owner(user: str | None) -> str:
    if user is None:
        raise Reject("unauthorized", "sign in first: jobs belong to the user who starts them")
    return user


def _params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TaskError("bad_request", "params must be a JSON object")
    return params


def attach(rt: Realtime) -> None:
    """Register the RPCs, the channel's options and who may watch it."""
    # Job updates: no presence, no joins and leaves, nothing kept.
    rt.channel(f"{NAMESPACE}:*", presence=False, join_leave=False, history_size=0)

    @rt.on_subscribe(f"{NAMESPACE}:*")
    def only_the_owner(user: str | None, channel: str) -> bool:
        if channel != TaskRunner.channel(_owner(user)):
            raise Reject("forbidden", "only its owner may watch a user's jobs")
        return True

    @rt.rpc("start_job")
    def start_job(user: str | None, params: Any) -> dict[str, Any]:
        p = _params(params)
        job = runner(rt).start(_owner(user), p.get("steps", 20), p.get("step_seconds", 0.25),
                               p.get("label"))
        return job.public()

    @rt.rpc("cancel_job")
    def cancel_job(user: str | None, params: Any) -> dict[str, Any]:
        return runner(rt).cancel(_params(params).get("id"), _owner(user)).public()

    @rt.rpc("list_jobs")
    def list_jobs(user: str | None, params: Any) -> dict[str, Any]:
        owner = _owner(user)
        tasks = runner(rt)
        lim = tasks.limits
        return {"channel": tasks.channel(owner),
                "jobs": [j.public() for j in tasks.visible(owner)],
                "limits": {"max_steps": lim.max_steps,
                           "min_step_seconds": lim.min_step_seconds,
                           "max_step_seconds": lim.max_step_seconds,
                           "max_running_per_owner": lim.max_running_per_owner}}

    @rt.on_error(TaskError)
    def refused(exc: TaskError) -> Reject:
        return Reject(exc.code, str(exc))
