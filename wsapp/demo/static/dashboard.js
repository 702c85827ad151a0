// Dashboard page: render the figures the server pushes on sys:dashboard once a second.
import { $, pageClient } from "./page.js";

const SVG = "http://www.w3.org/2000/svg";
const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
let lastTick = 0;

function bytes(n) {
  if (n < 1024) return `${Math.round(n)} B/s`;
  if (n < 1024 * 1024) return `${fmt.format(n / 1024)} KiB/s`;
  return `${fmt.format(n / 1024 / 1024)} MiB/s`;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Draw `values` (oldest first) as a filled line, newest at the right edge. */
function sparkline(values) {
  const box = $("sparkline");
  const w = 600, h = 120, pad = 4;
  const max = Math.max(1, ...values);
  const step = (w - 2 * pad) / 59;   // a fixed 60 s axis: the line grows in from the right
  const x0 = w - pad - (values.length - 1) * step;
  const pts = values.map((v, i) => [x0 + i * step, h - pad - (v / max) * (h - 2 * pad)]);
  const line = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" });
  for (const f of [0.25, 0.5, 0.75]) {
    const y = pad + f * (h - 2 * pad);
    root.append(svg("line", { x1: 0, x2: w, y1: y, y2: y, class: "grid" }));
  }
  if (pts.length > 1) {
    const area = `${x0},${h - pad} ${line} ${pts[pts.length - 1][0]},${h - pad}`;
    root.append(svg("polygon", { points: area, class: "area" }));
    root.append(svg("polyline", { points: line, class: "line" }));
  }
  box.replaceChildren(root);
  $("spark-max").textContent = `(peak ${fmt.format(Math.max(0, ...values))}/s)`;
}

function render(d) {
  lastTick = Date.now();
  document.body.classList.remove("stale");
  const t = new Date(d.time);
  $("clock").textContent = t.toLocaleTimeString([], { hour12: false });
  const skew = (d.time - Date.now()) / 1000;
  $("clock-date").textContent = `${t.toLocaleDateString()} · this browser's clock is ` +
    (Math.abs(skew) < 0.5 ? "in step" : `${fmt.format(Math.abs(skew))} s ${skew > 0 ? "behind" : "ahead"}`);
  $("online").textContent = d.users;
  $("connections").textContent = d.connections;
  $("channels").textContent = d.channels;
  $("rate").textContent = fmt.format(d.msgs_per_s);
  $("rate-split").textContent = `${fmt.format(d.in_per_s)} in · ${fmt.format(d.out_per_s)} out`;
  $("bandwidth").textContent = bytes(d.bytes_in_per_s + d.bytes_out_per_s);
  $("bw-split").textContent = `${bytes(d.bytes_in_per_s)} in · ${bytes(d.bytes_out_per_s)} out`;
  sparkline(Array.isArray(d.history) ? d.history : []);
}

const client = pageClient();
// Only the latest snapshot matters: no replay of missed seconds after a reconnect.
client.subscribe("sys:dashboard", render, { replay: false });
sparkline([]);
// Figures older than 3 s are greyed out so a stalled feed is obvious.
setInterval(() => {
  if (lastTick && Date.now() - lastTick > 3000) document.body.classList.add("stale");
}, 1000);
