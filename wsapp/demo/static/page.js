// page.js: what every demo page shares. One WsClient per page, shown in the one header
// (who, connection state, round-trip time), and the strip under the header: "demo mode", or
// — when the server has an API key — how to sign in, with a form for a pasted token (kept
// in sessionStorage: this tab only). "wsapp" is the JS client, mapped to rt.client_url by
// the import map in base.html.
import { WsClient, guestId, h } from "wsapp";

export { h };
export const $ = (id) => document.getElementById(id);

/** Whether the server runs in demo mode (no API key), as base.html rendered it. */
export const demo = document.body.dataset.demo === "true";

const TOKEN = "wsapp.demo.token";   // a pasted token (not demo mode)
const NICK = "wsapp.nick";          // the chat nickname (demo mode), shared by the tabs
const UNAUTHORIZED = 4401;
let shown = null;                   // the client the header shows (the inbox swaps them)

/** The user this page acts as in demo mode: the chat nickname, else this tab's guest id. */
export function demoUser() {
  return localStorage.getItem(NICK) || guestId();
}

/** Keep the chat nickname for this browser's pages (demo mode). */
export function saveNickname(nick) {
  localStorage.setItem(NICK, nick);
}

/** Show `text` in a notice element (hidden when empty). */
export function notice(el, text) {
  el.hidden = !text;
  el.textContent = text || "";
}

/** A clock time: 14:05, or 14:05:09 with seconds. */
export function clock(ms, { seconds = false } = {}) {
  return new Date(ms || Date.now()).toLocaleTimeString([], {
    hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined,
    hourCycle: "h23",
  });
}

/** A round-trip time for people: 0.8 ms, 12 ms. */
export function ms(value) {
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

/**
 * A connected WsClient for this page, shown in the header. In demo mode it mints a token for
 * `user` (default: demoUser()); otherwise it uses the pasted token, or goes anonymous.
 */
export function pageClient({ user } = {}) {
  const client = demo
    ? new WsClient({ user: user || demoUser() })
    : new WsClient({ token: async () => sessionStorage.getItem(TOKEN) });
  showInHeader(client);
  if (!demo) signInWith(client);
  return client.connect();
}

function showInHeader(client) {
  shown = client;
  let fresh = false;   // a round trip measured on this connection (never a stale one)
  const render = () => {
    if (client !== shown) return;
    const state = $("conn-state");
    state.dataset.state = client.state;
    state.textContent = client.state;
    $("latency").textContent = fresh && client.state === "live" ? ms(client.latency) : "–";
    const who = $("whoami");
    who.textContent = client.identity ? `as ${client.identity}`
      : client.state === "live" ? (demo ? "anonymous" : "not signed in") : "…";
    who.title = who.textContent;   // the whole of it, when the header cuts it short
  };
  client.on("state", (state) => { if (state !== "live") fresh = false; render(); });
  client.on("latency", () => { fresh = true; render(); });
  client.on("welcome", render);
  render();
}

/** Not demo mode: the sign-in strip pastes a token into this tab and reconnects with it. */
function signInWith(client) {
  const signedIn = (user) => {
    $("signin-help").hidden = !!user;
    $("signed-in").hidden = !user;
    $("signed-in-user").textContent = user || "";
  };
  client.on("welcome", (w) => { if (client === shown) signedIn(w.user); });
  client.on("disconnected", ({ code, reason }) => {
    if (code !== UNAUTHORIZED || client !== shown || !sessionStorage.getItem(TOKEN)) return;
    sessionStorage.removeItem(TOKEN);   // the client reconnects anonymously
    notice($("signin-error"), `That token was refused (${reason || "unauthorized"}): mint ` +
      "a new one.");
    signedIn(null);
  });
  $("signin-form").onsubmit = (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN, $("signin-token").value.trim());
    $("signin-token").value = "";
    notice($("signin-error"), "");
    shown.setUser(shown.user);   // forget the old token, connect with the new one
  };
  $("signout").onclick = () => {
    sessionStorage.removeItem(TOKEN);
    shown.setUser(shown.user);
  };
}
