"""Task progress: steps reach the page as they happen; cancel; several jobs; reload."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from playwright.sync_api import expect

# Records (ms since the observer started, step) each time a job's step changes in the DOM.
OBSERVE = """() => {
  window.__steps = [];
  const t0 = performance.now();
  new MutationObserver((records) => {
    for (const r of records) {
      const li = r.target;
      if (r.attributeName === "data-step" && li.dataset.id) {
        window.__steps.push({ id: li.dataset.id, step: +li.dataset.step,
                              t: performance.now() - t0 });
      }
    }
  }).observe(document.getElementById("jobs"),
             { subtree: true, attributes: true, attributeFilter: ["data-step"] });
}"""


def live(page) -> None:
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")


def start_job(page, steps: int, step_seconds: float, label: str):
    page.fill("#task-steps", str(steps))
    page.fill("#task-step-seconds", str(step_seconds))
    page.fill("#task-label", label)
    page.click("#task-start")
    job = page.locator("#jobs li.job", has=page.locator(".job-label", has_text=label))
    expect(job).to_have_count(1)
    return job


def test_progress_arrives_step_by_step(web, browsers, shot) -> None:
    steps, step_seconds = 12, 0.25
    page = browsers.page(web.base + "/tasks")
    live(page)
    page.evaluate(OBSERVE)
    job = start_job(page, steps, step_seconds, "spread check")
    expect(job).to_have_attribute("data-state", "done", timeout=steps * step_seconds * 1000 + 8000)
    job_id = job.get_attribute("data-id")
    seen = [r for r in page.evaluate("window.__steps") if r["id"] == job_id and r["step"] > 0]

    values = [r["step"] for r in seen]
    assert values == sorted(values), values
    assert values[-1] == steps
    # Each step is its own DOM update (a few may coalesce on a slow box, not most).
    assert len(set(values)) >= steps * 2 // 3, values
    # Spread over the job's run, not bunched at the end: the updates span at least half of
    # the nominal duration, and the halfway step shows up well before the last one.
    times = [r["t"] for r in seen]
    span = times[-1] - times[0]
    assert span >= 0.5 * (steps - 1) * step_seconds * 1000, seen
    halfway = next(r["t"] for r in seen if r["step"] >= steps // 2)
    assert halfway - times[0] <= 0.8 * span, seen
    assert times[-1] - halfway >= 0.25 * span, seen
    expect(job.locator(".job-step")).to_have_text(f"step {steps} / {steps} · 100%")


def test_cancel_several_jobs_and_reload(web, browsers, shot) -> None:
    page = browsers.page(web.base + "/tasks")
    live(page)
    keep = start_job(page, 60, 0.2, "keeps running")
    stop = start_job(page, 60, 0.2, "to be cancelled")
    # Both advance at once.
    page.wait_for_function(
        "(ids) => ids.every((id) => +document.querySelector(`li[data-id='${id}']`)"
        ".dataset.step >= 2)",
        arg=[keep.get_attribute("data-id"), stop.get_attribute("data-id")], timeout=5000)
    assert keep.get_attribute("data-state") == stop.get_attribute("data-state") == "running"

    stop.locator("button.cancel").click()
    expect(stop).to_have_attribute("data-state", "cancelled", timeout=3000)
    expect(stop.locator("button.cancel")).to_be_hidden()
    frozen = int(stop.get_attribute("data-step"))
    before = int(keep.get_attribute("data-step"))
    page.wait_for_timeout(800)
    assert int(stop.get_attribute("data-step")) == frozen  # no step after the cancel
    assert int(keep.get_attribute("data-step")) > before  # the other one goes on
    shot(page, "tasks")

    # A reload shows the running job where it is (and it keeps advancing) and the cancelled one.
    reached = int(keep.get_attribute("data-step"))
    page.reload()
    live(page)
    keep = page.locator("#jobs li.job", has=page.locator(".job-label", has_text="keeps running"))
    stop = page.locator("#jobs li.job", has=page.locator(".job-label", has_text="to be cancelled"))
    expect(stop).to_have_attribute("data-state", "cancelled")
    expect(keep).to_have_attribute("data-state", "running")
    assert int(keep.get_attribute("data-step")) >= reached
    page.wait_for_function(
        "([id, n]) => +document.querySelector(`li[data-id='${id}']`).dataset.step > n",
        arg=[keep.get_attribute("data-id"), int(keep.get_attribute("data-step")) + 1],
        timeout=5000)
    keep.locator("button.cancel").click()
    expect(keep).to_have_attribute("data-state", "cancelled", timeout=3000)


def call(base: str, method: str, path: str, body: object = None,
         token: str | None = None) -> tuple[int, dict]:
    """(status, JSON) of one HTTP request."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_task_api_validates_and_caps(web) -> None:
    for bad in ({"steps": 0}, {"steps": 10_000}, {"steps": "5"}, {"steps": True},
                {"step_seconds": 0}, {"step_seconds": 60}, {"label": 5}):
        status, body = call(web.base, "POST", "/api/tasks", bad)
        assert status == 400 and body["error"], (bad, body)
    assert call(web.base, "POST", "/api/tasks/nope/cancel")[0] == 404
    # Per-user cap on running jobs (anonymous callers share one allowance).
    started = []
    for _ in range(6):
        status, body = call(web.base, "POST", "/api/tasks", {"steps": 50, "step_seconds": 0.2})
        if status != 201:
            break
        started.append(body["id"])
    assert status == 429 and 1 <= len(started) <= 4, (status, body, started)
    for job_id in started:
        assert call(web.base, "POST", f"/api/tasks/{job_id}/cancel")[1]["state"] == "cancelled"


def test_task_api_with_api_key_needs_tokens_and_keeps_jobs_private(own_server) -> None:
    own_server.start("--api-key", "k3y")
    base = own_server.base
    tokens = {u: call(base, "POST", "/api/tokens", {"user": u}, token="k3y")[1]["token"]
              for u in ("ann", "ben")}
    assert call(base, "GET", "/api/tasks")[0] == 401
    assert call(base, "POST", "/api/tasks", {}, token="not.valid")[0] == 401
    status, job = call(base, "POST", "/api/tasks", {"steps": 50}, token=tokens["ann"])
    assert status == 201 and job["by"] == "ann"
    ann = call(base, "GET", "/api/tasks", token=tokens["ann"])[1]
    ben = call(base, "GET", "/api/tasks", token=tokens["ben"])[1]
    assert [j["id"] for j in ann["jobs"]] == [job["id"]] and ben["jobs"] == []
    assert ann["channel"] != ben["channel"] and ann["channel"].startswith("sys:tasks.")
    assert call(base, "POST", f"/api/tasks/{job['id']}/cancel", token=tokens["ben"])[0] == 404
    status, done = call(base, "POST", f"/api/tasks/{job['id']}/cancel", token=tokens["ann"])
    assert status == 200 and done["state"] == "cancelled"
