// Inbox: the user's side of the push console. On each connection it lists the user's push
// records (rpc "inbox": acked ones too) and what was sent to everyone (room:all, subscribed
// `since: 0`: the history the server keeps), newest first; then both arrive live. The JS
// client acks each personal message after this page has shown it; the page marks it acked
// when the server confirms. Each message is one line, whichever way it came (by its id).
import { $, clock, demo, demoUser, h, notice, pageClient } from "./page.js";

const USER = /^[A-Za-z0-9_.@-]{1,64}$/;
const EVERYONE = "room:all";
const KEEP = 200;   // lines kept on the page
const RANK = { received: 0, acked: 1 };

let client = null;
let items = new Map();   // msg id -> its line

const note = (text) => notice($("inbox-error"), text);

function clear() {
  items = new Map();
  $("inbox").replaceChildren();
  count();
}

function count() {
  const n = $("inbox").children.length;
  $("inbox-count").textContent = n;
  $("inbox-empty").hidden = n > 0;
}

function mark(li, state) {
  if (!li.querySelector(".ack-state") || RANK[state] < RANK[li.dataset.state]) return;
  li.dataset.state = state;
  li.querySelector(".ack-state").textContent = state === "acked" ? "✓ acked" : state;
}

/** Newest first: put `li` before the first line older than it. */
function place(li, ts) {
  li.dataset.ts = ts;
  const list = $("inbox");
  const older = [...list.children].find((el) => Number(el.dataset.ts) < ts);
  list.insertBefore(li, older || null);
  while (list.children.length > KEEP) {
    items.delete(list.lastElementChild.dataset.msg);
    list.lastElementChild.remove();
  }
  count();
}

/** Show a message once (a record, a delivery or a broadcast); later news only marks it. */
function show(msg, ts, data, personal, state = "received") {
  const known = items.get(msg);
  if (known) return mark(known, state);
  const text = data && typeof data === "object" && typeof data.text === "string"
    ? data.text : JSON.stringify(data);
  const category = data && typeof data === "object" && typeof data.category === "string"
    ? data.category : null;
  const li = h("li", { class: personal ? "item personal" : "item everyone", dataset: { msg } },
    h("div", { class: "item-head" },
      h("span", { class: "kind" }, personal ? "for you" : "to everyone"),
      category ? h("span", { class: "tag" }, category) : null,
      h("time", {}, clock(ts, { seconds: true })),
      personal ? h("span", { class: "ack-state" }) : null),
    h("p", { class: "text" }, text));
  items.set(msg, li);
  mark(li, state);
  place(li, ts);
}

/** Connect as `user` (demo mode: any user; else the signed-in one), with a fresh client. */
function open(user) {
  if (client) client.close();
  clear();
  if (demo) {
    user = user || demoUser();
    $("user-input").value = user;
    history.replaceState(null, "", `?user=${encodeURIComponent(user)}`);
  }
  const c = client = pageClient({ user });
  c.on("welcome", async (w) => {
    if (c !== client) return;
    $("inbox-user").textContent = w.user || "nobody";
    if (!w.user) return note(demo ? "Connected anonymously: this server gave no token."
      : "Sign in above to open your inbox.");
    note("");
    try {
      for (const r of await c.rpc("inbox")) {
        show(r.msg, r.created, r.data, true, r.status === "acked" ? "acked" : "received");
      }
    } catch (err) {
      if (c === client) note(`Could not list your messages: ${err.reason || err.message}`);
    }
  });
  c.on("message", (frame) => {
    if (c === client && c.identity && frame.channel === `user:${c.identity}`) {
      show(frame.msg, frame.ts, frame.data, true);
    }
  });
  c.on("ack", (reply) => {
    const li = c === client && items.get(reply.msg);
    if (li) mark(li, reply.status === "acked" ? "acked" : reply.status);
  });
  c.on("error", (err) => {
    // Anonymous connections may not join rooms; the welcome note already says why.
    if (c === client && c.identity && err.channel === EVERYONE) {
      note(`Not listening to everyone: ${err.message}`);
    }
  });
  c.subscribe(EVERYONE, (data, frame) => {
    if (c === client) show(frame.msg, frame.ts, data, false);
  }, { since: 0 });
}

if (demo) {
  $("user-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("user-input").value.trim();
    if (!USER.test(user)) return note("A user id is 1–64 letters, digits, _ . @ -");
    note("");
    open(user);
  });
}
const asked = new URLSearchParams(location.search).get("user");
open(asked && USER.test(asked) ? asked : undefined);
