// Task progress page: start server jobs over HTTP, watch their steps arrive over /ws.
import { WsClient, bindHeader, fetchJSON, h } from "../wsapp.js";

const $ = (id) => document.getElementById(id);
const jobs = new Map();   // id -> latest job state
const client = new WsClient();
bindHeader(client);
let channel = null;
let unsubscribe = null;

function showError(text) {
  $("task-error").hidden = !text;
  $("task-error").textContent = text || "";
}

/** Whether `a` is a later state of a job than `b` (updates may race the HTTP listing). */
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
        h("span", { class: "job-by" }, job.by ? `by ${job.by}` : ""),
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

/** Fetch the job list (first load, and after every (re)subscribe to catch up). */
async function refresh() {
  const info = await fetchJSON("/api/tasks", { token: await client.token() });
  if (channel !== info.channel) {   // first load, or the server restarted with new names
    if (unsubscribe) unsubscribe();
    channel = info.channel;
    unsubscribe = client.subscribe(channel, (data) => {
      if (data && data.type === "job") update(data.job);
    });
  }
  for (const job of info.jobs) update(job);
  $("jobs-empty").hidden = jobs.size > 0;
}

async function cancel(id) {
  try {
    update(await fetchJSON(`/api/tasks/${encodeURIComponent(id)}/cancel`,
      { method: "POST", token: await client.token() }));
    showError("");
  } catch (err) {
    showError(`Cancel failed: ${err.message}`);
  }
}

$("task-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {
    steps: Number($("task-steps").value),
    step_seconds: Number($("task-step-seconds").value),
  };
  if ($("task-label").value.trim()) body.label = $("task-label").value.trim();
  $("task-start").disabled = true;
  try {
    update(await fetchJSON("/api/tasks", { method: "POST", body, token: await client.token() }));
    showError("");
  } catch (err) {
    showError(`Could not start the job: ${err.message}`);
  } finally {
    $("task-start").disabled = false;
  }
});

client.on("subscribed", (s) => {
  if (s.channel === channel) refresh().catch((err) => showError(err.message));
});
client.connect();
refresh().catch((err) => showError(`Could not list jobs: ${err.message}`));
