// Echo page: a raw WebSocket on /ws/echo (no app protocol): send what is typed, show the
// echo, and measure round trips with our own marked pings. Reconnects like the wsapp client.
import { backoffDelay, h, showLatency, showState } from "../wsapp.js";

const log = document.getElementById("echo-log");
const input = document.getElementById("echo-input");
const PING = "\u0000ping:";
const samples = [];
let ws = null;
let retry = 0;

function add(text, cls) {
  log.prepend(h("li", { class: cls }, text));   // text, never HTML
  while (log.children.length > 200) log.lastChild.remove();
}

function connect() {
  showState(retry ? "reconnecting" : "connecting");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(`${proto}//${location.host}/ws/echo`);
  ws = sock;
  sock.onopen = () => { retry = 0; showState("live"); ping(); };
  sock.onmessage = (ev) => {
    if (typeof ev.data === "string" && ev.data.startsWith(PING)) {
      samples.push(performance.now() - Number(ev.data.slice(PING.length)));
      if (samples.length > 5) samples.shift();
      showLatency(samples.reduce((a, b) => a + b, 0) / samples.length);
      return;
    }
    add(`← ${ev.data}`, "in");
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    ws = null;
    showState("reconnecting");
    setTimeout(connect, backoffDelay(retry++));
  };
}

function ping() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(PING + performance.now());
}

document.getElementById("echo-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN || !input.value) return;
  ws.send(input.value);
  add(`→ ${input.value}`, "out");
  input.value = "";
});

setInterval(ping, 2000);
connect();
