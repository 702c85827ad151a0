"""Flask-SocketIO driven by the socket.io JavaScript client (the npm package's dist file, no
build step) in headless Chromium: with transports ["websocket"], and with the default
transports, where the engine starts on HTTP long-polling and must end upgraded to
WebSocket. Every test asserts the transport in use is "websocket"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .appserver import AppServer
from .conftest import HANDLER_SERVERS, serve

# One scenario per page: refusal, then two sockets exercising every feature the app has.
# Each wait is bounded; the first failure rejects with what was being waited for.
SCENARIO = """
async ({transports, token}) => {
  const within = (ms, what, promise) => Promise.race([promise, new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms))]);
  const next = (socket, event) => within(3000, event, new Promise(res => socket.once(event,
      (...args) => res(args.length === 1 ? args[0] : args))));
  const open = (auth) => {
    const opts = {auth, forceNew: true, reconnection: false, timeout: 3000};
    if (transports) opts.transports = transports;
    return io(opts);
  };
  const out = {};

  const refused = open({token: "wrong"});
  out.refused = (await next(refused, "connect_error")).message;
  refused.close();

  const a = open({token, name: "a"}), b = open({token, name: "b"});
  await Promise.all([next(a, "connect"), next(b, "connect")]);
  for (let i = 0; i < 60 && [a, b].some(s => s.io.engine.transport.name !== "websocket"); i++)
    await new Promise(res => setTimeout(res, 50));
  out.transports = [a.io.engine.transport.name, b.io.engine.transport.name];

  out.ack = await a.timeout(4000).emitWithAck("echo", {text: "h\u00e9llo", n: [1, null]});
  const reversed = await a.timeout(4000).emitWithAck("reverse", new Uint8Array([1, 2, 3, 250]));
  out.reversed = Array.from(new Uint8Array(reversed));
  const blob = next(a, "blob");
  a.emit("blob", 5);
  const got = await blob;
  out.blob = {size: got.size, data: Array.from(new Uint8Array(got.data))};

  const room = "browser-room";
  out.joined = await a.timeout(4000).emitWithAck("join", room);
  const heard = next(a, "room_message");
  await b.timeout(4000).emitWithAck("to_room", room, "hi room");
  out.room = await heard;
  await a.timeout(4000).emitWithAck("leave", room);
  let leaked = null;
  a.once("room_message", m => { leaked = m; });
  await b.timeout(4000).emitWithAck("to_room", room, "after leave");

  const shouts = [next(a, "shouted"), next(b, "shouted")];
  b.emit("shout", "to all");
  out.shouted = await Promise.all(shouts);
  out.leaked = leaked;

  const steps = [];
  a.on("progress", p => steps.push(p.step));
  const done = next(a, "progress_done");
  out.work = await a.timeout(4000).emitWithAck("work", 4);
  out.done = await done;
  out.steps = steps;

  const error = next(a, "handler_error");
  out.boom = await a.timeout(4000).emitWithAck("boom", "browser");
  out.error = await error;

  out.final = [a.io.engine.transport.name, b.io.engine.transport.name];
  a.close(); b.close();
  return out;
}
"""


@pytest.fixture(params=HANDLER_SERVERS)
def sio_server(request, pool, socketio_js) -> Iterator[AppServer]:
    yield from serve(request, pool, "socketio_app:app", *request.param)


@pytest.mark.parametrize("transports", [["websocket"], None], ids=["websocket-only", "upgrade"])
def test_browser_client(sio_server, browser, transports):
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(sio_server.base + "/")
        out = page.evaluate(SCENARIO, {"transports": transports, "token": "let-me-in"})
    finally:
        context.close()
    assert out["refused"] == "bad token"
    assert out["transports"] == ["websocket", "websocket"], out
    assert out["ack"] == {"text": "h\u00e9llo", "n": [1, None]}
    assert out["reversed"] == [250, 3, 2, 1]
    assert out["blob"] == {"size": 5, "data": [0, 1, 2, 3, 4]}
    assert out["joined"] == "joined browser-room"
    assert out["room"] == {"room": "browser-room", "text": "hi room"}
    assert out["shouted"] == ["to all", "to all"]
    assert out["leaked"] is None
    assert (out["work"], out["done"], out["steps"]) == ("started", 4, [1, 2, 3, 4])
    assert out["boom"] == {"error": "kaboom: browser"}
    assert out["error"] == {"type": "ValueError", "message": "kaboom: browser"}
    assert out["final"] == ["websocket", "websocket"]
    assert not errors, errors
