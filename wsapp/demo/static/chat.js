// Chat page: rooms (room:<name> channels), a nickname (the token's user id) and presence.
// Everything users typed is inserted as text (h() / textContent), never as HTML.
import { WsClient, bindHeader, guestId, h, savedNickname } from "../wsapp.js";

const $ = (id) => document.getElementById(id);
const NICK = /^[A-Za-z0-9_.@-]{1,32}$/;
const ROOM = /^[A-Za-z0-9_.-]{1,40}$/;
const KEEP = 200;   // messages kept per room

const rooms = new Map();   // name -> {unsubscribe, items: [li], members: Set, unread}
let active = null;
let nick = savedNickname() || guestId();

const client = new WsClient({ user: nick });
bindHeader(client);

function note(text) {
  $("chat-error").hidden = !text;
  $("chat-error").textContent = text || "";
}

function saveRooms() {
  localStorage.setItem("wsapp.rooms", JSON.stringify([...rooms.keys()]));
}

function time(ms) {
  return new Date(ms || Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit",
    hourCycle: "h23" });
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

function onMessage(name, data, frame) {
  const text = data && typeof data === "object" && typeof data.text === "string"
    ? data.text : JSON.stringify(data);
  const from = frame.from ?? "server";
  addItem(name, h("li", { class: from === client.identity ? "msg mine" : "msg" },
    h("time", {}, time(frame.ts)), h("b", { class: "from" }, from), h("span", { class: "text" }, text)));
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
  const members = room ? [...room.members].sort() : [];
  $("presence-count").textContent = members.length;
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
    const room = { items: [], members: new Set(), unread: 0, unsubscribe: null };
    rooms.set(name, room);
    room.unsubscribe = client.subscribe(`room:${name}`, (data, frame) => onMessage(name, data, frame));
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

client.on("subscribed", ({ channel }) => {
  if (channel.startsWith("room:")) loadPresence(channel.slice(5));
});
for (const op of ["join", "leave"]) {
  client.on(op, ({ channel, user }) => {
    const name = channel.startsWith("room:") ? channel.slice(5) : null;
    const room = rooms.get(name);
    // Skip no-op events: after a server restart everyone "joins" again, with no leave before.
    if (!room || room.members.has(user) === (op === "join")) return;
    if (op === "join") room.members.add(user); else room.members.delete(user);
    if (name === active) renderPresence();
    addItem(name, h("li", { class: "event" }, h("time", {}, time()),
      `${user} ${op === "join" ? "joined" : "left"}`), { counts: false });
  });
}
client.on("state", (state) => { $("chat-send").disabled = state !== "live"; });
client.on("welcome", (w) => {
  $("nick-input").value = w.user || "";
  if (!w.user) note("Connected anonymously: this server needs a token to chat.");
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
  nick = value;
  localStorage.setItem("wsapp.nick", nick);
  note("");
  client.setUser(nick);   // a token for the new name, then a fresh connection
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
$("nick-input").value = nick;
client.connect();
