"""The demo job runner: long jobs in greenlets, each step published the moment it happens.

Every job has an owner, the user who started it: only they see it, cancel it and hear of it.
A job runs `steps` steps of `step_seconds` each. After every step (and on start, finish,
cancel or failure) its whole state is published on the owner's channel `tasks:<owner>`,
which only the owner may subscribe to (jobs.py's on_subscribe hook). (`user:<id>` is not
used: that is the user's acked inbox, where every step would wait for an ack.) Running jobs
are capped overall and per owner; finished jobs are kept for `keep_seconds` so a reloaded
page still shows how they ended. Jobs live in the process that runs them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event

log = logging.getLogger("wsapp.demo.tasks")

NAMESPACE = "tasks"


class TaskError(Exception):
    """A refused request; `code` is the error code the caller gets (bad_request, not_found,
    too_many_jobs, busy)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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
    owner: str  # who started it: the only one who sees and cancels it
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
            "id": self.id, "label": self.label, "steps": self.steps,
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

    @staticmethod
    def channel(owner: str) -> str:
        """The channel `owner`'s jobs are published on."""
        return f"{NAMESPACE}:{owner}"

    # -- queries -----------------------------------------------------------------------

    def running(self) -> list[Job]:
        """Every running job."""
        return [j for j in self.jobs.values() if j.state == "running"]

    def visible(self, owner: str) -> list[Job]:
        """`owner`'s jobs, oldest first."""
        self._expire()
        return sorted((j for j in self.jobs.values() if j.owner == owner),
                      key=lambda j: j.created)

    def get(self, job_id: Any, owner: str) -> Job:
        """The job, if it is `owner`'s (someone else's is as unknown as a missing one)."""
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None or job.owner != owner:
            raise TaskError("not_found", f"you have no job {job_id!r}")
        return job

    # -- commands ----------------------------------------------------------------------

    def start(self, owner: str, steps: Any = 20, step_seconds: Any = 0.25,
              label: Any = None) -> Job:
        """Validate, check the caps, and start a job for `owner`."""
        lim = self.limits
        steps = _number(steps, "steps", int)
        step_seconds = _number(step_seconds, "step_seconds", float)
        if not 1 <= steps <= lim.max_steps:
            raise TaskError("bad_request", f"steps must be 1..{lim.max_steps}")
        if not lim.min_step_seconds <= step_seconds <= lim.max_step_seconds:
            raise TaskError("bad_request", f"step_seconds must be {lim.min_step_seconds}.."
                                           f"{lim.max_step_seconds}")
        if steps * step_seconds > lim.max_duration:
            raise TaskError("bad_request", f"a job may last at most {lim.max_duration:g} s")
        if label is not None and not isinstance(label, str):
            raise TaskError("bad_request", "label must be a string")
        self._expire()
        if len(self.running()) >= lim.max_running:
            raise TaskError("busy", f"{lim.max_running} jobs are running on this server "
                                    "already; try again later")
        mine = [j for j in self.running() if j.owner == owner]
        if len(mine) >= lim.max_running_per_owner:
            raise TaskError("too_many_jobs", f"you have {len(mine)} jobs running (at most "
                                             f"{lim.max_running_per_owner}); wait or cancel one")
        job_id = secrets.token_hex(4)
        job = Job(id=job_id, owner=owner, channel=self.channel(owner),
                  label=(label or f"job {job_id}")[:60], steps=steps, step_seconds=step_seconds)
        self.jobs[job.id] = job
        self._send(job)
        gevent.spawn(self._run, job)
        return job

    def cancel(self, job_id: Any, owner: str) -> Job:
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
            # A failed publish must not kill the job: the page lists the jobs on reload.
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
        raise TaskError("bad_request", f"{name} must be a number")
    if kind is int and value != int(value):
        raise TaskError("bad_request", f"{name} must be a whole number")
    return kind(value)
