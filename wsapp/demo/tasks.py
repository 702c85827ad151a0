"""The demo job runner: long jobs in greenlets, each step published the moment it happens.

A job runs `steps` steps of `step_seconds` each. After every step (and on start, finish,
cancel or failure) its whole state is published on its channel: `sys:tasks` for jobs without
an owner (demo mode: everyone watches the same board), otherwise the owner's private board
`sys:tasks.<hmac>` — a name only the owner learns (from the authenticated job list), so
nobody else can subscribe to it. (`user:<id>` is not used: that is the user's acked inbox.)
Running jobs are capped overall and per owner; finished jobs are kept for `keep_seconds` so
a reloaded page still shows how they ended.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event

log = logging.getLogger("wsapp.demo.tasks")

PUBLIC_CHANNEL = "sys:tasks"


class TaskError(Exception):
    """A refused request; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    """Bounds on what clients may ask for."""

    max_running: int = 16
    max_running_per_owner: int = 4
    max_steps: int = 200
    min_step_seconds: float = 0.05
    max_step_seconds: float = 5.0
    max_duration: float = 300.0
    keep_seconds: float = 60.0
    max_kept: int = 100


@dataclass
class Job:
    """One job's state; `public()` is what clients see."""

    id: str
    owner: str | None  # who may see and cancel it; None: everyone
    by: str | None  # who started it, for display
    channel: str
    label: str
    steps: int
    step_seconds: float
    step: int = 0
    state: str = "running"  # running | done | cancelled | failed
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: Event = field(default_factory=Event, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "by": self.by, "label": self.label, "steps": self.steps,
            "step": self.step, "step_seconds": self.step_seconds, "state": self.state,
            "progress": round(self.step / self.steps, 4),
            "created": int(self.created * 1000),
            "finished": None if self.finished is None else int(self.finished * 1000),
        }


Publish = Callable[[str, dict], Any]


class TaskRunner:
    """Jobs of one app. `publish(channel, data)` sends an update (the hub's publish)."""

    def __init__(self, publish: Publish, limits: Limits | None = None) -> None:
        self.publish = publish
        self.limits = limits or Limits()
        self.jobs: dict[str, Job] = {}
        self._key = secrets.token_bytes(16)  # names private boards; new on each start

    def channel(self, owner: str | None) -> str:
        """The channel `owner`'s jobs are published on."""
        if owner is None:
            return PUBLIC_CHANNEL
        digest = hmac.new(self._key, owner.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{PUBLIC_CHANNEL}.{digest[:24]}"

    # -- queries -----------------------------------------------------------------------

    def running(self) -> list[Job]:
        """Every running job."""
        return [j for j in self.jobs.values() if j.state == "running"]

    def visible(self, owner: str | None) -> list[Job]:
        """The jobs `owner` may see, oldest first (ownerless jobs are everyone's)."""
        self._expire()
        return sorted((j for j in self.jobs.values() if j.owner is None or j.owner == owner),
                      key=lambda j: j.created)

    def get(self, job_id: str, owner: str | None) -> Job:
        """The job, if `owner` may see it; else TaskError 404."""
        job = self.jobs.get(job_id)
        if job is None or (job.owner is not None and job.owner != owner):
            raise TaskError(404, "no such job")
        return job

    # -- commands ----------------------------------------------------------------------

    def start(self, owner: str | None, steps: Any = 20, step_seconds: Any = 0.25,
              label: Any = None, by: str | None = None) -> Job:
        """Validate, check the caps, and start a job; `by` is who asked (shown, not checked)."""
        lim = self.limits
        steps = _number(steps, "steps", int)
        step_seconds = _number(step_seconds, "step_seconds", float)
        if not 1 <= steps <= lim.max_steps:
            raise TaskError(400, f"steps must be 1..{lim.max_steps}")
        if not lim.min_step_seconds <= step_seconds <= lim.max_step_seconds:
            raise TaskError(400, f"step_seconds must be {lim.min_step_seconds}.."
                                 f"{lim.max_step_seconds}")
        if steps * step_seconds > lim.max_duration:
            raise TaskError(400, f"a job may last at most {lim.max_duration:g} s")
        if label is not None and not isinstance(label, str):
            raise TaskError(400, "label must be a string")
        self._expire()
        if len(self.running()) >= lim.max_running:
            raise TaskError(429, f"{lim.max_running} jobs are running already; try later")
        mine = [j for j in self.running() if (j.owner, j.by) == (owner, by)]
        if len(mine) >= lim.max_running_per_owner:
            raise TaskError(429, f"you have {lim.max_running_per_owner} jobs running; "
                                 "wait or cancel one")
        job_id = secrets.token_hex(4)
        job = Job(id=job_id, owner=owner, by=by or owner, channel=self.channel(owner),
                  label=(label or f"job {job_id}")[:60], steps=steps, step_seconds=step_seconds)
        self.jobs[job.id] = job
        self._send(job)
        gevent.spawn(self._run, job)
        return job

    def cancel(self, job_id: str, owner: str | None) -> Job:
        """Ask a job to stop; it stops at once (mid-step). Cancelling a finished job is a no-op."""
        job = self.get(job_id, owner)
        if job.state == "running":
            job.cancel.set()
            self._finish(job, "cancelled")
        return job

    # -- internals ---------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        try:
            started = time.monotonic()
            for step in range(1, job.steps + 1):
                # Steps are scheduled against the start time so delays do not accumulate.
                wait = started + step * job.step_seconds - time.monotonic()
                if job.cancel.wait(max(0.0, wait)):
                    return
                job.step = step
                if step < job.steps:
                    self._send(job)
            self._finish(job, "done")
        except Exception:
            log.exception("job %s failed", job.id)
            self._finish(job, "failed")

    def _finish(self, job: Job, state: str) -> None:
        if job.state != "running":
            return
        job.state, job.finished = state, time.time()
        self._send(job)

    def _send(self, job: Job) -> None:
        try:
            self.publish(job.channel, {"type": "job", "job": job.public()})
        except Exception:
            # A failed publish must not kill the job: the page also polls on reload.
            log.exception("publishing job %s failed", job.id)

    def _expire(self) -> None:
        """Forget finished jobs past keep_seconds, and the oldest past max_kept."""
        now = time.time()
        done = sorted((j for j in self.jobs.values() if j.finished is not None),
                      key=lambda j: j.finished or 0)
        extra = len(done) - self.limits.max_kept
        for i, job in enumerate(done):
            if i < extra or now - (job.finished or now) > self.limits.keep_seconds:
                del self.jobs[job.id]


def _number(value: Any, name: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(400, f"{name} must be a number")
    if kind is int and value != int(value):
        raise TaskError(400, f"{name} must be a whole number")
    return kind(value)
