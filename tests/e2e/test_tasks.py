"""Task progress: jobs started by RPC, steps reaching the page as they happen; cancel;
several jobs; reload; each user sees only their own."""

from __future__ import annotations

from playwright.sync_api import expect

from e2e.pages import PHONE, assert_no_sideways_scroll, live

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


def test_jobs_belong_to_the_user_who_started_them(web, browsers) -> None:
    ann = browsers.page(web.base + "/tasks")
    ben = browsers.page(web.base + "/tasks", width=PHONE)  # another browser: another guest
    live(ann)
    live(ben)
    expect(ann.locator("#task-start")).to_be_enabled()
    mine = start_job(ann, 40, 0.2, "ann's job")
    ann.wait_for_timeout(600)  # several steps: none of them reach ben
    expect(ben.locator("#jobs li.job")).to_have_count(0)
    expect(ben.locator("#jobs-empty")).to_be_visible()
    # Each user has their own allowance: ann's running job takes nothing from ben's.
    for n in range(4):
        start_job(ben, 40, 0.2, f"ben {n}")
    ben.fill("#task-label", "ben 5")
    ben.click("#task-start")
    expect(ben.locator("#task-error")).to_have_text(
        "Could not start the job: you have 4 jobs running (at most 4); wait or cancel one")
    expect(ben.locator("#jobs li.job")).to_have_count(4)
    assert_no_sideways_scroll(ben)
    running = ben.locator("#jobs li.job[data-state=running]")
    for left in (3, 2, 1, 0):
        running.first.locator("button.cancel").click()
        expect(running).to_have_count(left)
    expect(ben.locator("#jobs li.job[data-state=cancelled]")).to_have_count(4)
    expect(mine).to_have_attribute("data-state", "running")
    mine.locator("button.cancel").click()
    expect(mine).to_have_attribute("data-state", "cancelled")
