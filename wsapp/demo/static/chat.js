// Chat page: rooms (room:<name> channels) opened with the history the server keeps, a
// nickname (the token's user id, in demo mode) and presence. Users' text is inserted as
// text (h() / textContent), never as HTML.
//
// History: each room is subscribed `since: 0`, so the server replays what it keeps and then
// continues live, holding live messages back until the replay is out. Each message is shown
// once: the page skips any offset it has already shown.
//
// A nickname change reconnects as another user. Before it does, the page announces it in
// each of its rooms ({type: "rename", to}, sent as the old name), so the others show one
// "X is now Y" line and treat the leave and join that follow as the rename they are.
import { $, clock, demo, h, notice, pageClient, saveNickname } from "./page.js";

const NICK = /^[A-Za-z0-9_.@-]{1,32}$/;
const ROOM = /^[A-Za-z0-9_.-]{1,40}$/;
const KEEP = 200;   // messages shown per room

// name -> {items: [li], members: Set, unread, offset (last shown), ready (live, not
// replaying), unsubscribe}
const rooms = new Map();
let active = null;

const client = pageClient();
const note = (text) => notice($("chat-error"), text);

function saveRooms() {
  localStorage.setItem("wsapp.rooms", JSON.stringify([...rooms.keys()]));
}

function addItem(name, li, { counts = true } = {}) {
  const room = rooms.get(name);
  if (!room) return;
  room.items.push(li);
  if (room.items.length > KEEP) room.items.shift().remove();
  if (name === active) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    if (atBottom) list.scrollTop = list.scrollHeight;
  } else if (counts) {
    room.unread += 1;
    renderRooms();
  }
}

function event(text, ts) {
  return h("li", { class: "event" }, h("time", {}, clock(ts)), text);
}

function onMessage(name, data, frame) {
  const room = rooms.get(name);
  if (!room) return;
  if (typeof frame.offset === "number") {   // history and live meet here: show each once
    if (frame.offset <= room.offset) return;
    room.offset = frame.offset;
  }
  if (data && data.type === "rename" && typeof data.to === "string" && frame.from) {
    return renamed(name, room, frame.from, data.to, frame.ts);
  }
  const text = data && typeof data === "object" && typeof data.text === "string"
    ? data.text : JSON.stringify(data);
  const from = frame.from ?? "server";
  addItem(name, h("li", { class: from === client.identity ? "msg mine" : "msg" },
    h("time", {}, clock(frame.ts)), h("b", { class: "from" }, from),
    h("span", { class: "text" }, text)));
}

function renamed(name, room, from, to, ts) {
  addItem(name, event(`${from} is now ${to}`, ts), { counts: false });
  if (!room.ready) return;   // from the history: presence says who is here now
  // Live: the old name's leave and the new name's join that follow are no news.
  room.members.delete(from);
  room.members.add(to);
  if (name === active) renderPresence();
}

function renderRooms() {
  $("rooms").replaceChildren(...[...rooms].map(([name, room]) =>
    h("li", { class: name === active ? "active" : null },
      h("button", { type: "button", class: "room", onclick: () => show(name) }, `# ${name}`,
        room.unread ? h("span", { class: "unread" }, room.unread) : null),
      h("button", { type: "button", class: "leave", title: `leave #${name}`,
        "aria-label": `leave ${name}`, onclick: () => leave(name) }, "×"))));
}

function renderPresence() {
  const room = rooms.get(active);
  const live = client.state === "live";
  const members = room && live ? [...room.members].sort() : [];
  $("presence-count").textContent = live ? members.length : "–";
  notice($("presence-state"), !live ? "Offline: reconnecting…"
    : client.identity ? "" : "Sign in to see who is here.");
  $("presence").replaceChildren(...members.map((m) =>
    h("li", { class: m === client.identity ? "me" : null, title: m }, h("span", {}, m),
      m === client.identity ? h("small", {}, "you") : null)));
}

async function loadPresence(name) {
  try {
    const reply = await client.presence(`room:${name}`);
    const room = rooms.get(name);
    if (!room) return;
    room.members = new Set(reply.members);
    if (name === active) renderPresence();
  } catch (err) {
    if (name === active) note(`Presence: ${err.message}`);
  }
}

function join(name, { focus = true } = {}) {
  if (!rooms.has(name)) {
    const room = { items: [], members: new Set(), unread: 0, offset: 0, ready: false };
    rooms.set(name, room);
    room.unsubscribe = client.subscribe(`room:${name}`,
      (data, frame) => onMessage(name, data, frame), { since: 0 });
    saveRooms();
  }
  if (focus) show(name);
}

function leave(name) {
  const room = rooms.get(name);
  if (!room || rooms.size === 1) return;   // always stay in at least one room
  room.unsubscribe();
  rooms.delete(name);
  saveRooms();
  if (active === name) show(rooms.keys().next().value);
  else renderRooms();
}

function show(name) {
  active = name;
  const room = rooms.get(name);
  room.unread = 0;
  $("room-name").textContent = name;
  $("messages").replaceChildren(...room.items);
  $("messages").scrollTop = $("messages").scrollHeight;
  localStorage.setItem("wsapp.room", name);
  renderRooms();
  renderPresence();
  if (client.state === "live") loadPresence(name);
}

/** Announce the new name in every room (as the old one), then reconnect under it. */
async function rename(to) {
  if (client.state === "live" && client.identity) {
    await Promise.allSettled([...rooms.keys()].map((name) =>
      client.publish(`room:${name}`, { type: "rename", to })));
  }
  saveNickname(to);
  client.setUser(to);   // a token for the new name, then a fresh connection
}

client.on("subscribed", ({ channel }) => {
  const room = channel.startsWith("room:") ? rooms.get(channel.slice(5)) : null;
  if (!room) return;
  room.ready = true;   // the replay is out: what comes now is live
  loadPresence(channel.slice(5));
});
for (const op of ["join", "leave"]) {
  client.on(op, ({ channel, user }) => {
    const name = channel.startsWith("room:") ? channel.slice(5) : null;
    const room = rooms.get(name);
    // No news (a rename announced it; after a server restart everyone "joins" again).
    if (!room || room.members.has(user) === (op === "join")) return;
    if (op === "join") room.members.add(user); else room.members.delete(user);
    if (name === active) renderPresence();
    if (user === client.identity) return;   // our own comings and goings are no news to us
    addItem(name, event(`${user} ${op === "join" ? "joined" : "left"}`), { counts: false });
  });
}
client.on("state", (state) => {
  $("chat-send").disabled = state !== "live" || !client.identity;
  if (state !== "live") {
    for (const room of rooms.values()) {   // nobody is known to be here until we are back
      room.ready = false;
      room.members.clear();
    }
  }
  renderPresence();
});
client.on("welcome", (w) => {
  $("nick-input").value = w.user || "";
  $("who-note").textContent = w.user ? `You chat as ${w.user}, the user your token names.`
    : "You are not signed in: sign in above to chat.";
  if (w.user) note("");
  else note(demo ? "Connected anonymously: this server did not give this page a token."
    : "Sign in above to chat: rooms are for signed-in users.");
});

$("chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("chat-input");
  const text = input.value;
  if (!text.trim()) return;
  try {
    await client.publish(`room:${active}`, { text });
    input.value = "";
    note("");
  } catch (err) {
    note(`Not sent: ${err.message}`);
  }
});

$("nick-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("nick-input").value.trim();
  if (!NICK.test(value)) return note("A nickname is 1–32 letters, digits, _ . @ -");
  if (value === client.identity) return;
  note("");
  rename(value);
});

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("room-input").value.trim().toLowerCase();
  if (!ROOM.test(value)) return note("A room name is 1–40 letters, digits, _ . -");
  $("room-input").value = "";
  note("");
  join(value);
});

let saved = [];
try { saved = JSON.parse(localStorage.getItem("wsapp.rooms") || "[]"); } catch { /* reset */ }
for (const name of (saved.length ? saved : ["lobby", "random"]).filter((n) => ROOM.test(n))) {
  join(name, { focus: false });
}
const last = localStorage.getItem("wsapp.room");
show(rooms.has(last) ? last : rooms.keys().next().value);
