// Echo page: a raw WebSocket on /ws/echo (no app protocol). Each message sent is one line,
// oldest first; its echo fills the same line with the round-trip time of that message. The
// echo route answers in order, so replies are matched to the oldest message still waiting.
// The header shows the page's /ws connection (page.js), like every page.
import { backoffDelay } from "wsapp";
import { $, h, ms, pageClient } from "./page.js";

const KEEP = 200;       // lines kept
const log = $("echo-log");
const waiting = [];     // {li, t}: sent, not echoed yet, oldest first
let ws = null;
let retry = 0;
let sent = 0;

pageClient();

function showState(state) {
  $("echo-state").dataset.state = state;
  $("echo-state").textContent = state;
}

function add(text) {
  // The <li> keeps its list number; the grid that lays the line out is inside it.
  const li = h("li", { class: "pending" }, h("div", { class: "line" },
    h("span", { class: "out" }, `→ ${text}`), h("span", { class: "in" }, "waiting for the echo…"),
    h("span", { class: "rtt" })));
  log.append(li);
  while (log.children.length > KEEP) log.firstElementChild.remove();
  log.start = sent - log.children.length + 1;   // the lines keep their numbers
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function echoed(text) {
  const entry = waiting.shift();
  if (!entry) return;
  entry.li.className = "echoed";
  entry.li.querySelector(".in").textContent = `← ${text}`;
  entry.li.querySelector(".rtt").textContent = ms(performance.now() - entry.t);
}

function connect() {
  showState(retry ? "reconnecting" : "connecting");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(`${proto}//${location.host}/ws/echo`);
  ws = sock;
  sock.onopen = () => { retry = 0; showState("live"); };
  sock.onmessage = (ev) => echoed(typeof ev.data === "string" ? ev.data : "(binary)");
  sock.onclose = () => {
    if (ws !== sock) return;
    ws = null;
    for (const { li } of waiting.splice(0)) {   // lost with the connection
      li.className = "lost";
      li.querySelector(".in").textContent = "no echo: the connection dropped";
    }
    showState("reconnecting");
    setTimeout(connect, backoffDelay(retry++));
  };
}

$("echo-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("echo-input").value;
  if (!ws || ws.readyState !== WebSocket.OPEN || !text) return;
  sent += 1;
  waiting.push({ li: add(text), t: performance.now() });
  ws.send(text);
  $("echo-input").value = "";
});

connect();
