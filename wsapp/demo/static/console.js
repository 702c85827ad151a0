// Push console: send to everyone / a room / a user through the HTTP API, then follow each
// personal push's status (pending → delivered → acked, or suppressed / expired) by polling
// its records while any is still open. Everything typed is rendered as text (h()). The API's
// address comes from the client (apiUrl: beside rt.client_url), so the page follows the
// extension's URL prefix.
import { apiUrl } from "wsapp";
import { $, clock, demo, h, notice, pageClient } from "./page.js";

const USER = /^[A-Za-z0-9_.@-]{1,64}$/;
const ROOM = /^[A-Za-z0-9_.@-]{1,40}$/;
const EVERYONE = "room:all";   // the channel every inbox page listens to
const POLL_MS = 1000;
const RECORDS = 500;           // newest records fetched per user and poll
const FINAL = new Set(["acked", "expired", "suppressed"]);
const RANK = { pending: 0, delivered: 1, acked: 2, expired: 2, suppressed: 2 };

const HELP = {
  all: `Everyone = the ${EVERYONE} channel, which every inbox page listens to. A channel ` +
    "message is kept in history but not tracked per user and never acked.",
  room: "A room = a room:<name> channel, e.g. a Chat room: whoever is in it now gets the " +
    "message. Not tracked per user.",
  user: "A user = a personal push: kept until one of the user's pages acks it, and sent " +
    "again on every reconnect until then. Quotas may suppress it (by category).",
};

let apiKey = null;            // typed by the operator; lives only in this variable
const entries = new Map();    // msg id -> what we sent and what we know about it
let polling = false;

pageClient();   // the header: the console itself talks to the HTTP API
const note = (text) => notice($("console-error"), text);

function target() {
  return document.querySelector("input[name=target]:checked").value;
}

function showTarget() {
  const kind = target();
  $("room-field").hidden = kind !== "room";
  $("user-field").hidden = kind !== "user";
  $("category-field").hidden = kind !== "user";
  $("ttl-field").hidden = kind !== "user";
  $("target-help").textContent = HELP[kind];
}

/** One API call (POST with a body, else GET with `query`); resolves to {status, json} for
 * any HTTP answer, throws if unreachable. */
async function api(path, body, query) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const resp = await fetch(apiUrl(path) + (query ? `?${new URLSearchParams(query)}` : ""), {
    method: body === undefined ? "GET" : "POST", headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = await resp.json(); } catch { /* not JSON: keep the status */ }
  return { status: resp.status, json: json || {} };
}

function failure(res) {
  if (res.status === 401) {
    $("key-field").hidden = false;
    return "The API key was refused: type the server's key.";
  }
  return res.json.reason || res.json.error || `HTTP ${res.status}`;
}

/** A time cell: the clock time, and how long after the push was created. */
function stamp(ms, since) {
  if (!ms) return ["–"];
  const after = since ? h("small", {}, `+${((ms - since) / 1000).toFixed(1)} s`) : null;
  return [h("time", { datetime: new Date(ms).toISOString() }, clock(ms, { seconds: true })),
    after];
}

function detail(e) {
  switch (e.status) {
    case "published": return `offset ${e.offset}` +
      (e.listening == null ? "" : ` · ${e.listening} listening now`);
    case "pending": return `stored · waits for ${e.user} to connect`;
    case "delivered": return e.attempts > 1 ? `sent ${e.attempts}× · waiting for the ack`
      : "on a connection · waiting for the ack";
    case "acked": return e.attempts > 1 ? `after ${e.attempts} deliveries` : "";
    case "suppressed": return e.reason || "suppressed by a quota";
    case "expired": return "its ttl ran out before an ack";
    default: return "";
  }
}

function render(e) {
  const tr = e.tr;
  tr.dataset.status = e.status;
  tr.dataset.trail = e.trail.join(" ");
  tr.querySelector(".badge").textContent = e.status;
  tr.querySelector(".badge").title = e.trail.join(" → ");
  tr.querySelector(".detail").textContent = detail(e);
  if (e.user) {
    tr.querySelector(".delivered").replaceChildren(...stamp(e.delivered, e.created).filter(Boolean));
    tr.querySelector(".acked").replaceChildren(...stamp(e.acked, e.created).filter(Boolean));
  }
}

function add(e) {
  const to = e.user
    ? [h("span", { class: "kind" }, "user"), " ",
      h("a", { href: `/inbox?user=${encodeURIComponent(e.user)}`, target: "_blank",
        rel: "noopener", title: `open ${e.user}'s inbox` }, e.user)]
    : e.channel === EVERYONE ? [h("span", { class: "kind" }, "everyone")]
      : [h("span", { class: "kind" }, "room"), " ", e.channel.slice(5)];
  e.trail = [];
  // data-label: on a narrow screen each row is a card whose cells name themselves.
  e.tr = h("tr", { dataset: { msg: e.msg } },
    h("td", { class: "when", dataset: { label: "Sent" } }, clock(e.sent, { seconds: true })),
    h("td", { class: "to", dataset: { label: "To" } }, to),
    h("td", { class: "text", dataset: { label: "Message" } }, h("span", {}, e.text),
      e.category ? h("span", { class: "tag" }, e.category) : null),
    h("td", { class: "status", dataset: { label: "Status" } }, h("span", { class: "badge" }),
      h("small", { class: "detail" })),
    h("td", { class: "delivered", dataset: { label: "Delivered" } }, e.user ? "–" : null),
    h("td", { class: "acked", dataset: { label: "Acked" } }, e.user ? "–" : null));
  entries.set(e.msg, e);
  $("sent-rows").prepend(e.tr);
  $("sent-empty").hidden = true;
}

/** Move an entry to `status` with new facts; never backwards (the store may lag a reply). */
function advance(e, status, facts = {}) {
  if (FINAL.has(e.status) || (e.status in RANK && RANK[status] < RANK[e.status])) return;
  if (status !== e.status) e.trail.push(status);
  e.status = status;
  Object.assign(e, facts);
  render(e);
}

function open() {
  return [...entries.values()].filter((e) => e.user && !FINAL.has(e.status));
}

function showWatching() {
  const n = open().length;
  $("watching").textContent = n ? `· following ${n} open push${n === 1 ? "" : "es"}` : "";
}

function schedule() {
  showWatching();
  if (!polling && open().length) {
    polling = true;
    setTimeout(poll, POLL_MS);
  }
}

/** Refresh every open push from its user's records (one request per user). */
async function poll() {
  const users = new Set(open().map((e) => e.user));
  await Promise.all([...users].map(async (user) => {
    let res;
    try {
      res = await api(`users/${encodeURIComponent(user)}/messages`, undefined,
        { limit: RECORDS });
    } catch (err) {
      note(`Could not refresh statuses: ${err.message}`);
      return;
    }
    if (res.status !== 200) return note(`Could not refresh statuses: ${failure(res)}`);
    const records = new Map(res.json.messages.map((m) => [m.msg, m]));
    for (const e of open()) {
      const r = e.user === user && records.get(e.msg);
      if (r) {
        advance(e, r.status, { created: r.created, delivered: r.delivered, acked: r.acked,
          attempts: r.attempts, reason: r.reason });
      }
    }
  }));
  polling = false;
  schedule();
}

async function pushTo(user, text) {
  const category = $("category-input").value.trim() || null;
  const ttl = $("ttl-input").value ? Number($("ttl-input").value) : null;
  const body = { user, data: category ? { text, category } : { text } };
  if (category) body.category = category;
  if (ttl) body.ttl = ttl;
  const sent = Date.now();
  const res = await api("push", body);
  if (res.status !== 200 && res.status !== 429) return failure(res);
  const e = { msg: res.json.msg, user, text, category, sent };
  add(e);
  // "stored" (the user is offline) is what the records call "pending".
  const status = res.json.status === "stored" ? "pending" : res.json.status;
  advance(e, status, { reason: res.json.reason });
  schedule();
  return null;
}

async function publishTo(channel, text) {
  const sent = Date.now();
  const res = await api("publish", { channel, data: { text } });
  if (res.status !== 200) return failure(res);
  const e = { msg: res.json.msg, channel, text, sent, offset: res.json.offset };
  add(e);
  advance(e, "published");
  const who = await api("presence", undefined, { channel })
    .catch(() => null);
  if (who && who.status === 200) {
    e.listening = who.json.count;
    render(e);
  }
  return null;
}

$("push-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const kind = target();
  const text = $("text-input").value;
  if (!text.trim()) return note("Type a message first.");
  if (!demo) {
    apiKey = $("key-input").value.trim() || null;
    if (!apiKey) return note("This server has an API key: type it to send.");
  }
  let problem;
  $("send").disabled = true;
  try {
    if (kind === "user") {
      const user = $("user-input").value.trim();
      if (!USER.test(user)) return note("A user id is 1–64 letters, digits, _ . @ -");
      problem = await pushTo(user, text);
    } else {
      const room = $("room-input").value.trim().replace(/^(#|room:)/, "");
      if (kind === "room" && !ROOM.test(room)) return note("A room name is 1–40 letters, digits, _ . @ -");
      problem = await publishTo(kind === "all" ? EVERYONE : `room:${room}`, text);
    }
  } catch (err) {
    problem = `Not sent: ${err.message}`;
  } finally {
    $("send").disabled = false;
  }
  note(problem);
  if (!problem) $("text-input").value = "";
});

for (const radio of document.querySelectorAll("input[name=target]")) {
  radio.addEventListener("change", showTarget);
}
showTarget();
