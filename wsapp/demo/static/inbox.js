// Inbox: the user's side of the push console. Connects as one user, shows personal messages
// (user:<id>) and messages to everyone (room:all) as they arrive, and acks each personal
// message after it is in the page. Message text is rendered as text (h()).
import { WsClient, bindHeader, fetchJSON, guestId, h } from "../wsapp.js";

const $ = (id) => document.getElementById(id);
const USER = /^[A-Za-z0-9_.@-]{1,64}$/;
const EVERYONE = "room:all";
const KEEP = 200;   // items kept on the page

let client = null;
let pastedToken = null;        // only when the server is not in demo mode; memory only
let unacked = new Map();       // msg id -> its item, shown but not yet acked

function note(text) {
  $("inbox-error").hidden = !text;
  $("inbox-error").textContent = text || "";
}

function clock(ms) {
  return new Date(ms || Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23" });
}

function clear() {
  unacked = new Map();
  $("inbox").replaceChildren();
  count();
}

function count() {
  const n = $("inbox").children.length;
  $("inbox-count").textContent = n;
  $("inbox-empty").hidden = n > 0;
}

function mark(li, state) {
  li.dataset.state = state;
  li.querySelector(".ack-state").textContent =
    { received: "received", acked: "✓ acked", expired: "expired" }[state] || state;
}

function show(frame, personal) {
  const data = frame.data;
  const text = data && typeof data === "object" && typeof data.text === "string"
    ? data.text : JSON.stringify(data);
  const category = data && typeof data === "object" && typeof data.category === "string"
    ? data.category : null;
  const li = h("li", { class: personal ? "item personal" : "item everyone",
    dataset: { msg: frame.msg } },
  h("div", { class: "item-head" },
    h("span", { class: "kind" }, personal ? "for you" : "to everyone"),
    category ? h("span", { class: "tag" }, category) : null,
    h("time", {}, clock(frame.ts)),
    personal ? h("span", { class: "ack-state" }) : null),
  h("p", { class: "text" }, text));
  if (personal) mark(li, "received");
  $("inbox").prepend(li);
  while ($("inbox").children.length > KEEP) $("inbox").lastElementChild.remove();
  count();
  return li;
}

/** Ack a shown message. A failed ack is retried after the next (re)connect. */
async function ack(msg) {
  const li = unacked.get(msg);
  const current = client;
  try {
    const reply = await current.request("ack", { msg });
    if (current !== client) return;
    mark(li, reply.status);
    unacked.delete(msg);
  } catch (err) {
    if (current !== client) return;
    if (err.code === "not_found") {   // not ours (any more): nothing left to ack
      mark(li, "unknown");
      unacked.delete(msg);
    }
    // Otherwise the connection dropped: the server keeps the message due and the welcome
    // handler retries.
  }
}

async function tokenFor(user) {
  if (pastedToken) return pastedToken;
  try {
    return (await fetchJSON("/api/tokens", { method: "POST", body: { user } })).token;
  } catch (err) {
    if (err.status !== 401 && err.status !== 403) throw err;   // down: the client retries
    $("token-field").hidden = false;
    return null;   // not demo mode and no token yet: anonymous until one is pasted
  }
}

/** Connect as `user`, with a fresh client so its duplicate filter starts empty. */
function open(user) {
  if (client) client.close();
  clear();
  $("user-input").value = user;
  $("inbox-user").textContent = user;
  history.replaceState(null, "", `?user=${encodeURIComponent(user)}`);
  const c = new WsClient({ user, token: () => tokenFor(user) });
  client = c;
  bindHeader(c);
  c.on("welcome", (w) => {
    if (c !== client) return;
    $("inbox-user").textContent = w.user || "nobody (anonymous)";
    if (!w.user) {
      note("This server needs a token to open an inbox: paste one for this user.");
      return;
    }
    note("");
    // The server just sent every unacked message again; the client dropped the ones
    // already shown as duplicates, so ack those here.
    for (const msg of unacked.keys()) ack(msg);
  });
  c.on("message", (frame) => {
    if (c !== client || !c.identity || frame.channel !== `user:${c.identity}`) return;
    unacked.set(frame.msg, show(frame, true));
    ack(frame.msg);
  });
  c.on("error", (err) => {
    // Anonymous connections may not join rooms; the welcome note already says why.
    if (c === client && c.identity && err.channel === EVERYONE) note(`Not listening to everyone: ${err.message}`);
  });
  c.subscribe(EVERYONE, (data, frame) => { if (c === client) show(frame, false); });
  c.connect();
}

$("user-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const user = $("user-input").value.trim();
  if (!USER.test(user)) return note("A user id is 1–64 letters, digits, _ . @ -");
  pastedToken = $("token-input").value.trim() || null;
  note("");
  open(user);
});

fetchJSON("/api/config").then((cfg) => { $("token-field").hidden = cfg.demo !== false; })
  .catch(() => { /* tokenFor shows the field if minting is refused */ });
const asked = new URLSearchParams(location.search).get("user");
open(asked && USER.test(asked) ? asked : guestId());
