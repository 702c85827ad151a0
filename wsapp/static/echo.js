// Echo page: send what is typed, show the echo, measure ping/pong round trips.
const state = document.getElementById("conn-state");
const latency = document.getElementById("latency");
const log = document.getElementById("echo-log");
const input = document.getElementById("echo-input");
const PING = "\u0000ping:";
let ws = null;
let retry = 0;

function setState(s) { state.dataset.state = s; state.textContent = s; }

function add(text) {
  const li = document.createElement("li");
  li.textContent = text;  // text, never HTML
  log.prepend(li);
  while (log.children.length > 200) log.lastChild.remove();
}

function connect() {
  setState(retry ? "reconnecting" : "connecting");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws/echo`);
  ws.onopen = () => { retry = 0; setState("live"); ping(); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string" && ev.data.startsWith(PING)) {
      const ms = performance.now() - Number(ev.data.slice(PING.length));
      latency.textContent = `${ms.toFixed(1)} ms`;
      return;
    }
    add(`← ${ev.data}`);
  };
  ws.onclose = () => {
    setState("reconnecting");
    const delay = Math.random() * Math.min(10000, 250 * 2 ** retry++);  // full jitter
    setTimeout(connect, delay);
  };
}

function ping() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(PING + performance.now());
}

document.getElementById("echo-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN || !input.value) return;
  ws.send(input.value);
  add(`→ ${input.value}`);
  input.value = "";
});

setInterval(ping, 2000);
connect();
