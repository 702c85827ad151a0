// Task progress page: jobs are started, cancelled and listed by RPC (start_job, cancel_job,
// list_jobs); each step arrives on the user's own tasks:<user> channel as it happens. Jobs
// belong to the user who starts them: nobody else sees or cancels them.
import { $, demo, h, notice, pageClient } from "./page.js";

const jobs = new Map();   // id -> latest job state
const client = pageClient();
let channel = null;
let unsubscribe = null;

const showError = (text) => notice($("task-error"), text);

/** Whether `a` is a later state of a job than `b` (updates may race the listing). */
function newer(a, b) {
  if (!b) return true;
  if (b.state !== "running") return false;
  return a.state !== "running" || a.step >= b.step;
}

function update(job) {
  if (!newer(job, jobs.get(job.id))) return;
  jobs.set(job.id, job);
  render(job);
}

function render(job) {
  let li = document.querySelector(`li[data-id="${CSS.escape(job.id)}"]`);
  if (!li) {
    li = h("li", { class: "job card", dataset: { id: job.id } },
      h("div", { class: "job-head" },
        h("strong", { class: "job-label" }, job.label),
        h("span", { class: "job-state badge" }),
        h("button", { type: "button", class: "cancel", onclick: () => cancel(job.id) }, "Cancel")),
      h("div", { class: "bar" }, h("span")),
      h("div", { class: "job-foot" }, h("span", { class: "job-step" }), h("span", { class: "job-time" })));
    $("jobs").prepend(li);
  }
  const pct = Math.round(job.progress * 100);
  li.dataset.state = job.state;
  li.dataset.step = job.step;
  li.querySelector(".job-state").textContent = job.state;
  li.querySelector(".bar > span").style.width = `${pct}%`;
  li.querySelector(".job-step").textContent = `step ${job.step} / ${job.steps} · ${pct}%`;
  const secs = ((job.finished || Date.now()) - job.created) / 1000;
  li.querySelector(".job-time").textContent = job.state === "running"
    ? `${(job.steps * job.step_seconds).toFixed(1)} s job`
    : `${job.state} after ${secs.toFixed(1)} s`;
  li.querySelector(".cancel").hidden = job.state !== "running";
  $("jobs-empty").hidden = jobs.size > 0;
}

/** List the user's jobs (on connect, and after every (re)subscribe to catch up) and follow
 * their channel. */
async function refresh() {
  const info = await client.rpc("list_jobs");
  if (channel !== info.channel) {   // first list, or another user now
    forget();
    channel = info.channel;
    // Each update carries the job's whole state: only the latest matters, no replay.
    unsubscribe = client.subscribe(channel, (data) => {
      if (data && data.type === "job") update(data.job);
    }, { replay: false });
  }
  for (const job of info.jobs) update(job);
  $("jobs-empty").hidden = jobs.size > 0;
}

async function cancel(id) {
  try {
    update(await client.rpc("cancel_job", { id }));
    showError("");
  } catch (err) {
    showError(`Cancel failed: ${err.reason || err.message}`);
  }
}

$("task-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = {
    steps: Number($("task-steps").value),
    step_seconds: Number($("task-step-seconds").value),
  };
  if ($("task-label").value.trim()) params.label = $("task-label").value.trim();
  $("task-start").disabled = true;
  try {
    update(await client.rpc("start_job", params));
    showError("");
  } catch (err) {
    showError(`Could not start the job: ${err.reason || err.message}`);
  } finally {
    $("task-start").disabled = !client.identity;
  }
});

function forget() {
  if (unsubscribe) unsubscribe();
  unsubscribe = channel = null;
  jobs.clear();
  $("jobs").replaceChildren();
  $("jobs-empty").hidden = false;
}

client.on("welcome", (w) => {
  $("task-start").disabled = !w.user;
  if (!w.user) {
    forget();
    showError(demo ? "Connected anonymously: this server did not give this page a token."
      : "Sign in above to start jobs: a job belongs to the user who starts it.");
    return;
  }
  showError("");
  refresh().catch((err) => showError(`Could not list your jobs: ${err.reason || err.message}`));
});
client.on("subscribed", (s) => {
  if (s.channel === channel) refresh().catch((err) => showError(err.reason || err.message));
});
