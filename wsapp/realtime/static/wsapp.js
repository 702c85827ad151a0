// wsapp.js: the browser client for the wsapp /ws protocol (docs/protocol.md). An ES module,
// no build step. See docs/js-client.md.

// Where the server mounted /ws and /api: the folder this module is served from (its
// WSAPP_URL_PREFIX), so a page needs no configuration.
const BASE = new URL(".", import.meta.url);
const TOKEN_URL = apiUrl("tokens");
const DEDUPE_SIZE = 1000;      // message ids remembered to drop duplicates
const LATENCY_SAMPLES = 5;     // pings averaged into the rolling latency
const HELD_MAX = 10000;        // frames held behind a gap before the client reconnects instead
const CLOSE_UNAUTHORIZED = 4401;

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, full jitter —
 * a random wait in [0, min(cap, base * 2^attempt)) so that clients dropped together do not
 * all come back in the same instant.
 * @param {number} attempt @param {number} [base=300] @param {number} [cap=5000] @returns {number} ms
 */
export function backoffDelay(attempt, base = 300, cap = 5000) {
  return Math.random() * Math.min(cap, base * 2 ** Math.min(attempt, 20));
}

/** A guest user id, stable for this tab (sessionStorage), used when the page names none. */
export function guestId() {
  let id = sessionStorage.getItem("wsapp.guest");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(3));
    id = "guest-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("wsapp.guest", id);
  }
  return id;
}

/** The nickname chosen on the chat page (shared by this browser's tabs), or null. */
export function savedNickname() {
  return localStorage.getItem("wsapp.nick");
}

/**
 * fetch() returning parsed JSON; throws an Error carrying `status` (and the server's `error`
 * text) on a non-2xx answer.
 * @param {string} url @param {{method?: string, body?: any, token?: string}} [opts]
 */
/** The URL of an HTTP API endpoint of the server this module came from: apiUrl("push"). */
export function apiUrl(path) {
  return new URL(`api/${path}`, BASE).pathname;
}

export async function fetchJSON(url, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(url, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = await resp.json(); } catch { /* an empty or non-JSON body */ }
  if (!resp.ok) {
    const err = new Error((json && (json.error || json.reason)) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return json;
}

/** Thrown for `error` replies: `code` is the protocol's error code (e.g. "forbidden"). */
export class WsError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason || "request failed"}`);
    this.name = "WsError";
    this.code = code;
    this.reason = reason;
  }
}

/**
 * A /ws connection that keeps itself alive: it reconnects with backoff, re-subscribes its
 * channels (with `since` = the last offset seen), measures latency, and turns requests
 * into promises.
 *
 * Events (client.on): "state" (connecting | live | reconnecting | closed), "latency" (ms),
 * "welcome" (the welcome frame), "subscribed" ({channel, offset}), "join" / "leave"
 * ({channel, user}), "message" (every message frame), "error" (Error), "unsubscribed"
 * ({channel, reason}: the server took a subscription away; "subscribed" has server: true
 * when the server added one), "disconnected" ({code, reason}: codes 4000-4499 but 4401 are
 * final, the client does not reconnect by itself), "gap" ({channel,
 * from, to}: offsets that never arrived; the client resubscribes with `since` to get them)
 * and "history_lost" ({channel, first_offset, ranges: [[from, to], ...]}: offsets the
 * server no longer keeps, gone for good; delivery goes on without them).
 */
export class WsClient {
  /**
   * @param {object} [opts]
   * @param {string} [opts.url] the /ws URL (default: this host)
   * @param {string|(() => Promise<string|null>)} [opts.token] a token, or a function that
   *   fetches one; default: mint one at /api/tokens for `user` (demo mode), else anonymous
   * @param {string} [opts.user] the user to mint a token for (default: nickname or guest id)
   * @param {number} [opts.pingInterval=5000] ms between latency pings
   * @param {number} [opts.timeout=10000] ms a request waits for its reply
   * @param {number} [opts.backoffBase=300] @param {number} [opts.backoffCap=5000]
   */
  constructor(opts = {}) {
    const ws = new URL("ws", BASE);
    ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
    this.url = opts.url || ws.href;
    this.opts = { pingInterval: 5000, timeout: 10000, backoffBase: 300, backoffCap: 5000, ...opts };
    this.user = opts.user || null;      // the user we ask a token for
    this.identity = null;               // the user the server says we are (welcome.user)
    this.demo = null;
    this.state = "closed";
    this.latency = null;
    this._tokenFetch = null;
    this._token = typeof opts.token === "string" ? { token: opts.token, expires: Infinity } : null;
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._pingTimer = null;
    this._nextId = 1;
    this._pending = new Map();          // request id -> {resolve, reject, timer}
    this._subs = new Map();             // channel -> {handlers: Set, offset, replay, held}
    this._seen = new Set();             // message ids, oldest first (Set keeps insertion order)
    this._samples = [];
    this._listeners = new Map();
    this._stopped = true;
    this._gen = 0;
    this._authRetried = false;
  }

  /** Listen to an event; returns a function that removes the listener. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  /** Call every listener of `event`; false if any of them threw. */
  _emit(event, value) {
    let ok = true;
    for (const fn of this._listeners.get(event) || []) {
      try { fn(value); } catch (err) {
        ok = false;
        console.error(`wsapp: ${event} listener failed`, err);
      }
    }
    return ok;
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit("state", state);
  }

  /** Start connecting (and keep reconnecting until close()). Returns the client. */
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._attempt = 0;
    this._setState("connecting");
    this._open();
    return this;
  }

  /** Close for good: no more reconnects; pending requests are rejected. */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "client closed");
    this._teardown(new Error("client closed"));
    this._setState("closed");
  }

  /** Drop the current connection and connect again now (e.g. after the user changed). */
  reconnect() {
    if (this._stopped) return this.connect();
    clearTimeout(this._timer);
    this._attempt = 0;
    const ws = this._ws;
    this._teardown(new Error("reconnecting"));
    if (ws) ws.close(1000, "reconnecting");
    this._setState("reconnecting");
    this._open();
    return this;
  }

  /** Become another user: forget the token, mint one for `user`, reconnect. */
  setUser(user) {
    this.user = user;
    if (typeof this.opts.token !== "string") this._token = null;
    return this.reconnect();
  }

  /** A current token for HTTP calls (null when anonymous). */
  async token() {
    if (this._token && this._token.expires * 1000 - Date.now() > 30000) return this._token.token;
    // One fetch per user at a time: the page and the connection often ask at the same moment.
    const user = this.user;
    if (!this._tokenFetch || this._tokenFetch.user !== user) {
      const promise = this._fetchToken(user).finally(() => {
        if (this._tokenFetch && this._tokenFetch.promise === promise) this._tokenFetch = null;
      });
      this._tokenFetch = { user, promise };
    }
    const fresh = await this._tokenFetch.promise;
    if (user === this.user) this._token = fresh;   // not if we switched user meanwhile
    return fresh.token;
  }

  async _fetchToken(user) {
    const source = this.opts.token;
    if (typeof source === "string") return { token: source, expires: Infinity };
    if (typeof source === "function") return { token: await source(), expires: Infinity };
    const name = user || savedNickname() || guestId();
    try {
      const reply = await fetchJSON(TOKEN_URL, { method: "POST", body: { user: name } });
      return { token: reply.token, expires: reply.expires || Infinity };
    } catch (err) {
      // Not demo mode (or no token API): go on anonymously. Anything else (the server is
      // down, a 5xx) propagates so the caller retries later.
      if ([401, 403, 404].includes(err.status)) return { token: null, expires: Infinity };
      throw err;
    }
  }

  async _open() {
    clearTimeout(this._timer);
    const gen = ++this._gen;   // a newer _open (reconnect) makes this one stand down
    let token;
    try {
      token = await this.token();
    } catch (err) {
      if (gen === this._gen) this._retry(err);   // server down: the fetch failed instead
      return;
    }
    if (this._stopped || gen !== this._gen) return;
    const url = token ? `${this.url}?token=${encodeURIComponent(token)}` : this.url;
    const ws = new WebSocket(url);
    this._ws = ws;
    ws.onmessage = (ev) => this._receive(ev.data);
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;   // an old socket we already replaced
      this._teardown(new Error("connection lost"));
      const err = new Error(`closed ${ev.code} ${ev.reason || ""}`.trim());
      this._emit("disconnected", { code: ev.code, reason: ev.reason || "" });
      if (ev.code >= 4000 && ev.code < 4500 && ev.code !== CLOSE_UNAUTHORIZED) {
        // The server means it (rt.disconnect, a refused connection): no reconnect by itself.
        this._stopped = true;
        this._emit("error", err);
        this._setState("closed");
        return;
      }
      if (ev.code === CLOSE_UNAUTHORIZED && typeof this.opts.token !== "string") {
        // Expired or revoked (or the server's secret changed): mint a fresh token and try
        // again at once; only a second refusal in a row waits for the backoff.
        this._token = null;
        if (!this._authRetried) {
          this._authRetried = true;
          this._emit("error", err);
          this._setState("reconnecting");
          this._open();
          return;
        }
      }
      this._retry(err);
    };
  }

  /** Drop this connection and connect again: every channel resubscribes with `since`. */
  _restart(err, reason = "resync") {
    const ws = this._ws;
    this._teardown(err);
    if (ws) ws.close(4000, reason);
    this._retry(err);
  }

  _retry(err) {
    if (this._stopped) return;
    if (err) this._emit("error", err);
    this._setState("reconnecting");
    const delay = backoffDelay(this._attempt++, this.opts.backoffBase, this.opts.backoffCap);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _teardown(err) {
    this._ws = null;
    clearInterval(this._pingTimer);
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(err);
    }
    this._pending.clear();
  }

  _send(frame) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN || this.state !== "live") {
      throw new Error(`not connected (${this.state})`);
    }
    this._ws.send(JSON.stringify(frame));
  }

  /**
   * Send one request and wait for its reply.
   * @param {string} op @param {object} [fields] @param {number} [timeout] ms
   * @returns {Promise<object>} the `ok`/`pong` frame; rejects with WsError on `error`
   */
  request(op, fields = {}, timeout = this.opts.timeout) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      try {
        this._send({ ...fields, op, id });
      } catch (err) {
        reject(err);
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new Error(`${op}: no reply within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer });
    });
  }

  /**
   * Receive messages published on `channel`: handler(data, frame). Subscribes on the server
   * now (or as soon as connected) and again after every reconnect, asking the server to
   * replay what was missed (`since` = the last offset seen).
   * @param {string} channel @param {(data: any, frame: object) => void} handler
   * @param {{since?: number, replay?: boolean}} [opts] `since`: replay from this offset on
   *   the first subscribe too (0 = all the server keeps); `replay: false`: never replay
   *   (for feeds where only the latest value matters)
   * @returns {() => void} removes this handler (and unsubscribes when it was the last)
   */
  subscribe(channel, handler, { since = null, replay = true } = {}) {
    let sub = this._subs.get(channel);
    if (!sub) {
      sub = { handlers: new Set(), offset: since, replay, held: null, retry: 0, lostBelow: 0 };
      this._subs.set(channel, sub);
      if (this.state === "live") this._subscribeOnServer(channel, sub);
    }
    sub.handlers.add(handler);
    return () => {
      if (!sub.handlers.delete(handler) || sub.handlers.size) return;
      this._subs.delete(channel);
      if (this.state === "live") {
        this.request("unsubscribe", { channel }).catch((err) => this._emit("error", err));
      }
    };
  }

  _subscribeOnServer(channel, sub) {
    this.request("subscribe", { channel, since: sub.replay ? sub.offset : null })
      .then((reply) => {
        sub.retry = 0;
        this._release(sub, reply);
        if (sub.offset === null || reply.offset > sub.offset) sub.offset = reply.offset ?? null;
        this._emit("subscribed", { channel, offset: reply.offset });
      })
      .catch((err) => {
        err.channel = channel;
        this._emit("error", err);
        // Filling a gap failed (the server's store is unreachable, say): keep holding what
        // came after it and try again, backing off; a reconnect starts afresh anyway.
        if (sub.held && this.state === "live" && this._subs.get(channel) === sub) {
          sub.retry = Math.min((sub.retry || 250) * 2, 5000);
          setTimeout(() => {
            if (sub.held && this.state === "live" && this._subs.get(channel) === sub) {
              this._subscribeOnServer(channel, sub);
            }
          }, sub.retry);
        }
      });
  }

  /**
   * Messages held while a resubscription filled a gap: now, in offset order. When the reply
   * says history was lost, the offsets below its first_offset that we do not hold are gone
   * for good: say which ("history_lost" with their ranges), and let delivery skip them.
   */
  _release(sub, reply) {
    const held = (sub.held || []).sort((a, b) => a.offset - b.offset);
    sub.held = null;
    if (reply && reply.history_lost) {
      const ranges = [];
      let next = (sub.offset ?? 0) + 1;
      for (const frame of held) {
        if (frame.offset >= reply.first_offset) break;
        if (frame.offset > next) ranges.push([next, frame.offset - 1]);
        next = Math.max(next, frame.offset + 1);
      }
      if (next < reply.first_offset) ranges.push([next, reply.first_offset - 1]);
      this._emit("history_lost", { channel: reply.channel, first_offset: reply.first_offset,
                                   ranges });
      sub.lostBelow = reply.first_offset;
    }
    for (const frame of held) this._message(frame);  // a jump among them resyncs again
    sub.lostBelow = 0;
  }

  /** The server subscribed this connection (rt.subscribe): keep the channel, say so. */
  _serverSubscribed(frame) {
    let sub = this._subs.get(frame.channel);
    if (!sub) {
      sub = { handlers: new Set(), offset: null, replay: true, held: null, retry: 0,
              lostBelow: 0 };
      this._subs.set(frame.channel, sub);   // and resubscribed with `since` on reconnects
    }
    if (sub.offset === null || frame.offset > sub.offset) sub.offset = frame.offset;
    this._emit("subscribed", { channel: frame.channel, offset: frame.offset, server: true });
  }

  /** The server took a subscription away (rt.unsubscribe, rt.close_channel). */
  _serverUnsubscribed(frame) {
    this._subs.delete(frame.channel);
    this._emit("unsubscribed", { channel: frame.channel, reason: frame.reason });
  }

  /**
   * Call the server's `@rt.rpc(method)` handler with `params` (any JSON).
   * @param {{timeout?: number}} [opts] ms to wait for the answer (default: opts.timeout)
   * @returns {Promise<any>} what the handler returned; rejects with a WsError (its code:
   *   the handler's Reject code, unknown_method, internal_error, timeout...)
   */
  rpc(method, params = null, { timeout } = {}) {
    return this.request("rpc", { method, params }, timeout).then((reply) => reply.result);
  }

  /**
   * Publish `data` (any JSON) on `channel`.
   * @returns {Promise<{offset: number, msg: string}>}
   */
  publish(channel, data) {
    return this.request("publish", { channel, data });
  }

  /**
   * Who is subscribed to `channel`.
   * @returns {Promise<{members: string[], count: number, connections: number}>}
   */
  presence(channel) {
    return this.request("presence", { channel });
  }

  _ping() {
    const t = performance.now();
    this.request("ping", { t }, this.opts.timeout).then(() => {
      this._samples.push(performance.now() - t);
      if (this._samples.length > LATENCY_SAMPLES) this._samples.shift();
      this.latency = this._samples.reduce((a, b) => a + b, 0) / this._samples.length;
      this._emit("latency", this.latency);
    }).catch(() => {
      // No pong in time on a socket that still looks open: the peer is gone. Do not wait
      // for a closing handshake it will never answer; drop the socket and start over.
      const ws = this._ws;
      if (this.state !== "live" || !ws) return;
      const err = new Error("no pong: connection presumed dead");
      this._restart(err, "ping timeout");
    });
  }

  _receive(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (!frame || typeof frame !== "object") return;
    switch (frame.op) {
      case "welcome": return this._welcome(frame);
      case "message": return this._message(frame);
      case "join":
      case "leave":
        return this._emit(frame.op, { channel: frame.channel, user: frame.user });
      case "subscribed": return this._serverSubscribed(frame);
      case "unsubscribed": return this._serverUnsubscribed(frame);
      default: break;
    }
    const pending = frame.id != null && this._pending.get(frame.id);
    if (pending) {
      this._pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.op === "error") pending.reject(new WsError(frame.code, frame.reason));
      else pending.resolve(frame);
    } else if (frame.op === "error") {
      this._emit("error", new WsError(frame.code, frame.reason));
    }
  }

  _welcome(frame) {
    this._attempt = 0;
    this._authRetried = false;
    this.identity = frame.user ?? null;
    this.demo = frame.demo ?? null;
    this._setState("live");
    this._emit("welcome", frame);
    for (const [channel, sub] of this._subs) {
      sub.held = null;  // the replay brings those again
      sub.retry = 0;
      this._subscribeOnServer(channel, sub);
    }
    this._samples = [];
    this._ping();
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(() => this._ping(), this.opts.pingInterval);
  }

  _message(frame) {
    const sub = this._subs.get(frame.channel);
    if (sub && typeof frame.offset === "number") {
      // Offsets are dense per channel: a jump means messages we never got. Hold this one
      // (and the replay after it) and resubscribe from the last offset we have; the server
      // catches up in order. Only a second line: the server catches its clients up itself.
      if (sub.held) {
        sub.held.push(frame);
        if (sub.held.length > HELD_MAX) this._restart(new Error(`${frame.channel}: gap not filled`));
        return;
      }
      if (sub.replay && sub.offset !== null && frame.offset > sub.offset + 1
          && !(frame.offset <= sub.lostBelow)) {  // skipping only what history_lost named
        sub.held = [frame];
        this._emit("gap", { channel: frame.channel, from: sub.offset + 1, to: frame.offset - 1 });
        if (this.state === "live") this._subscribeOnServer(frame.channel, sub);
        return;
      }
    }
    // Personal messages (on our own user:<id>) stay due on the server until acked.
    const personal = this.identity != null && frame.channel === `user:${this.identity}`;
    if (frame.msg != null) {
      if (this._seen.has(frame.msg)) {         // already delivered (e.g. replayed)
        if (personal) this._ack(frame.msg);    // our earlier ack may have been lost
        return;
      }
      this._seen.add(frame.msg);
      if (this._seen.size > DEDUPE_SIZE) this._seen.delete(this._seen.values().next().value);
    }
    if (sub && typeof frame.offset === "number" && (sub.offset === null || frame.offset > sub.offset)) {
      sub.offset = frame.offset;
    }
    let handled = this._emit("message", frame);
    for (const handler of sub ? [...sub.handlers] : []) {
      try { handler(frame.data, frame); } catch (err) {
        handled = false;
        console.error("wsapp: handler failed", err);
      }
    }
    // Ack only after the page's handlers ran: a message whose handler failed stays pending
    // and comes back on the next connection (at-least-once).
    if (personal && frame.msg != null) {
      if (handled) this._ack(frame.msg);
      else this._seen.delete(frame.msg);
    }
  }

  /** Confirm a personal message to the server (fire and forget; a lost ack means a redelivery). */
  _ack(msg) {
    if (this.state !== "live") return;
    this.request("ack", { msg }).then((reply) => this._emit("ack", reply))
      .catch((err) => this._emit("error", err));
  }
}

/**
 * Show a client's state and latency in the page header (#conn-state, #latency).
 * @param {WsClient} client
 */
export function bindHeader(client) {
  client.on("state", showState);
  client.on("latency", showLatency);
  client.on("welcome", (w) => {
    const el = document.getElementById("whoami");
    if (el) el.textContent = w.user ? `as ${w.user}` : "anonymous";
  });
  showState(client.state);
}

/** Set the header's connection state badge. */
export function showState(state) {
  const el = document.getElementById("conn-state");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = state;
}

/** Set the header's round-trip time (ms; null shows a dash). */
export function showLatency(ms) {
  const el = document.getElementById("latency");
  if (el) el.textContent = ms == null ? "–" : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/**
 * Build an element: h("li", {class: "x"}, "text", child...). Strings become text nodes, so
 * user data is never parsed as HTML.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A page with no script of its own includes <script type="module" src="wsapp.js"
// data-autoconnect> to still show the connection state and latency in its header.
if (document.querySelector("script[data-autoconnect]")) {
  const client = new WsClient();
  bindHeader(client);
  client.connect();
}
