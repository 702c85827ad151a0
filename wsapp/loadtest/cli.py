"""`python -m wsapp.loadtest SCENARIO [options]`: parse options, check, run, report, exit code.

Before starting any worker it checks what would make the run meaningless (server down,
handshake refused, too few open files or local ports) and stops with a clear message and
a distinct exit code, so scripts can tell "the server is slow" from "nothing was tested".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from urllib.parse import quote

import gevent
from rich.console import Console

from wsapp.loadtest import display, limits, plot, report
from wsapp.loadtest.client import ClientError, HandshakeRefused, Target, connect, http_post_json
from wsapp.loadtest.options import (
    DEFAULT_RATES,
    SCENARIOS,
    Config,
    files_needed,
    parse_source_ips,
    resolve_url,
)
from wsapp.loadtest.runner import Coordinator
from wsapp.loadtest.scenarios import default_channel
from wsapp.loadtest.servercpu import ServerCpu, read_process
from wsapp.loadtest.stats import merge

EXIT_OK = 0
EXIT_ERRORS = 1  # error rate above --max-error-rate (or the run was cut short)
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4  # handshake, token or subscribe refused by the server
EXIT_LIMIT = 5  # open-file limit too low
EXIT_INTERRUPTED = 130

EPILOG = """\
scenarios:
  idle       open -c connections and hold them for --duration; one ping each at the end
  echo       -c clients send --size byte messages to /ws/echo: ping-pong (--rate 0) or
             --rate messages/s per client
  broadcast  -c subscribers on one room, one publisher at --rate messages/s; reports the
             latency to the first and the last receiver of each message
  churn      open --rate connections/s, each living connections/rate seconds
  chat       -c clients over --rooms rooms, each publishing --rate messages/s to its room

exit codes: 0 ok, 1 error rate above --max-error-rate, 2 bad options, 3 server unreachable,
4 handshake/token/subscribe refused, 5 open-file limit too low, 130 interrupted.
Report fields: docs/loadtest.md
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line (documented in docs/loadtest.md)."""
    p = argparse.ArgumentParser(
        prog="python -m wsapp.loadtest", description="Load-test a wsapp WebSocket server.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--url", default="ws://127.0.0.1:5000",
                   help="server URL; without a path the scenario's endpoint is used "
                        "(/ws/echo or /ws) [%(default)s]")
    p.add_argument("-c", "--connections", type=int, default=100,
                   help="connections (clients, subscribers) [%(default)s]")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds to measure, after all connections are open [%(default)s]")
    p.add_argument("--rate", type=float, default=None,
                   help="echo: msgs/s per client (0 = ping-pong); broadcast: publishes/s; "
                        "churn: connects/s; chat: publishes/s per client "
                        f"[{', '.join(f'{k} {v:g}' for k, v in DEFAULT_RATES.items())}]")
    p.add_argument("--size", type=int, default=32, help="message size in bytes [%(default)s]")
    p.add_argument("--ramp", type=float, default=0.0,
                   help="seconds over which to open the connections (0 = as fast as "
                        "--connect-concurrency allows) [%(default)s]")
    p.add_argument("--processes", type=int, default=1,
                   help="client processes to spread connections over [%(default)s]")
    p.add_argument("--source-ips", default="",
                   help="local addresses to connect from, round-robin: '127.0.0.1-127.0.0.8', "
                        "'127.0.0.1-8' or a comma list (each gives ~28k more local ports)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--plot", metavar="FILE", help="write a PNG: load, latency over time, "
                                                  "histogram")
    p.add_argument("--max-error-rate", type=float, default=0.01,
                   help="exit 1 when errors / operations exceeds this [%(default)s]")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds for TCP connect + handshake [%(default)s]")
    p.add_argument("--connect-concurrency", type=int, default=100,
                   help="handshakes in flight per process [%(default)s]")
    p.add_argument("--drain", type=float, default=10.0,
                   help="seconds to wait for in-flight messages after measuring [%(default)s]")
    p.add_argument("--channel", default="",
                   help="broadcast channel, chat room prefix [room:loadtest-<random>]")
    p.add_argument("--rooms", type=int, default=0,
                   help="chat: number of rooms [connections/10]")
    p.add_argument("--user", default="loadtest", help="user for POST /api/tokens [%(default)s]")
    p.add_argument("--api-key", default=os.environ.get("WSAPP_API_KEY", ""),
                   help="API key for POST /api/tokens (Authorization: Bearer) "
                        "[$WSAPP_API_KEY]")
    p.add_argument("--token", default="", help="use this token instead of asking for one")
    p.add_argument("--origin", default="", help="send this Origin header")
    p.add_argument("--server-pid", type=int, default=0,
                   help="report this local process's CPU use while measuring (Linux)")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    return p


def _fail(console: Console, code: int, title: str, detail: str = "") -> int:
    console.print(f"[bold red]error:[/bold red] {title}", highlight=False)
    if detail:
        console.print(detail, highlight=False)
    return code


def get_token(target: Target, user: str, api_key: str) -> tuple[str, str]:
    """Ask the server for a token: ('token', '') or ('', reason it could not)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    status, line, body = http_post_json(target, "/api/tokens", {"user": user}, headers)
    if status == 404:
        return "", "404"
    if status != 200 and status != 201:
        return "", f"POST /api/tokens answered {line!r}: {body}"
    if not isinstance(body, dict) or not body.get("token"):
        return "", f"POST /api/tokens answered without a token: {body!r}"
    return str(body["token"]), ""


def preflight(console: Console, cfg: Config) -> int:
    """One connection before the real run: is the server there, and does it accept us?"""
    target = Target.parse(cfg.url)
    if cfg.token:
        target = target.with_query(token=quote(cfg.token, safe=""))
    headers = {"Origin": cfg.origin} if cfg.origin else {}
    try:
        conn = connect(target, timeout=cfg.connect_timeout, headers=headers)
    except HandshakeRefused as exc:
        body = " ".join(re.sub(r"<[^>]+>", " ", exc.body).split())[:160]
        hint = {"404": "no WebSocket endpoint at this path: check --url",
                "401": "authentication needed: --api-key / --token",
                "403": "forbidden: check --origin, --api-key / --token",
                "503": "the server is at its connection limit"}.get(exc.kind[10:], "")
        return _fail(console, EXIT_REFUSED,
                     f"the server refused the WebSocket handshake for {cfg.url}: "
                     f"{exc.status_line}",
                     "\n".join(x for x in (f"body: {body}" if body else "", hint) if x))
    except ClientError as exc:
        if exc.kind in ("connect_refused", "connect_timeout") or exc.kind.startswith("connect_"):
            return _fail(console, EXIT_UNREACHABLE,
                         f"cannot reach the server at {target.host}:{target.port} ({exc}).",
                         "Is it running? e.g. `python serve.py --port "
                         f"{target.port}`, and check --url.")
        return _fail(console, EXIT_REFUSED, f"handshake with {cfg.url} failed: {exc}")
    code = EXIT_OK
    if cfg.scenario in ("broadcast", "chat"):
        # A subscribe proves the token and the room protocol work before 10k clients try.
        ch = cfg.channel if cfg.scenario == "broadcast" else cfg.channel + "-0"
        conn.send_json({"op": "subscribe", "channel": ch, "id": 1})
        replies: list[dict[str, object]] = []

        def on_message(_c: object, _op: int, payload: bytes) -> None:
            replies.append(json.loads(payload))

        failures: list[ClientError] = []

        def read() -> None:
            try:
                conn.run(on_message)
            except ClientError as exc:
                failures.append(exc)

        reader = gevent.spawn(read)
        with gevent.Timeout(cfg.connect_timeout, False):
            while not failures and not any(r.get("id") == 1 for r in replies):
                gevent.sleep(0.02)
        reply = next((r for r in replies if r.get("id") == 1), None)
        if reply is None and failures:
            # e.g. 4401: the server accepted the handshake, then refused the token.
            code = _fail(console, EXIT_REFUSED, str(failures[0]), "check --api-key / --token.")
        elif reply is None:
            code = _fail(console, EXIT_REFUSED, f"no answer to a subscribe on {ch} within "
                         f"{cfg.connect_timeout:g} s")
        elif reply.get("op") != "ok":
            code = _fail(console, EXIT_REFUSED,
                         f"the server refused to subscribe to {ch}: {reply.get('code')} "
                         f"{reply.get('reason', '')}",
                         "rooms need an authenticated user: check --api-key / --token.")
        conn.close()
        reader.join(timeout=2.0)
        conn.abort()
    else:
        conn.close()
        conn.abort()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (Ctrl-C before the run: 130, no trace)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _fail(Console(stderr=True), EXIT_INTERRUPTED, "interrupted.")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False, highlight=False)
    err = Console(stderr=True, highlight=False)
    if args.connections < 1 or args.processes < 1 or args.duration <= 0:
        return _fail(err, EXIT_USAGE, "--connections, --processes and --duration must be > 0")
    if args.server_pid and read_process(args.server_pid) is None:
        return _fail(err, EXIT_USAGE, f"--server-pid {args.server_pid}: no such process here "
                     "(it must be a local process whose /proc entry this user can read)")
    processes = min(args.processes, args.connections)
    try:
        source_ips = parse_source_ips(args.source_ips) if args.source_ips else []
        url = resolve_url(args.url, args.scenario)
        Target.parse(url)
    except ValueError as exc:
        return _fail(err, EXIT_USAGE, str(exc))
    rate = DEFAULT_RATES[args.scenario] if args.rate is None else args.rate
    if args.scenario in ("broadcast", "churn") and rate <= 0:
        return _fail(err, EXIT_USAGE, f"{args.scenario} needs --rate > 0")
    cfg = Config(
        scenario=args.scenario, url=url, connections=args.connections, duration=args.duration,
        rate=rate, size=args.size, ramp=args.ramp, processes=processes, source_ips=source_ips,
        connect_timeout=args.connect_timeout, connect_concurrency=args.connect_concurrency,
        drain=args.drain, channel=args.channel or default_channel(), rooms=args.rooms,
        token=args.token, origin=args.origin)

    # Limits first: nothing else is worth doing if the run cannot open its sockets.
    need = files_needed(cfg)
    try:
        limits.raise_nofile(need, cfg.connections, cfg.processes)
    except limits.LimitError as exc:
        return _fail(err, EXIT_LIMIT, "open-file limit too low.", str(exc))
    per_address = cfg.connections if cfg.scenario != "churn" else cfg.connections * 2
    warn = limits.check_ports(per_address, len(cfg.source_ips))
    if warn:
        return _fail(err, EXIT_LIMIT, "not enough local ports.", warn)

    target = Target.parse(cfg.url)
    if cfg.scenario in ("broadcast", "chat") and not cfg.token:
        try:
            token, why = get_token(target, args.user, args.api_key)
        except ClientError as exc:
            return _fail(err, EXIT_UNREACHABLE,
                         f"cannot reach the server at {target.host}:{target.port} ({exc}).")
        if why == "404":
            err.print("note: the server has no POST /api/tokens; connecting without a token",
                      highlight=False)
        elif why:
            return _fail(err, EXIT_REFUSED, "could not get a token.",
                         why + "\n(with an API key configured on the server, pass --api-key "
                         "KEY or set WSAPP_API_KEY)")
        cfg.token = token
    code = preflight(err, cfg)
    if code != EXIT_OK:
        return code

    server_cpu = ServerCpu(args.server_pid) if args.server_pid else None
    live = display.LiveDisplay(console, cfg.scenario, enabled=not args.quiet)

    load_before = os.getloadavg()[0]
    with live:
        outcome = Coordinator(cfg, on_progress=live.update,
                              on_phase=server_cpu.enter if server_cpu else None).run()
    load_after = os.getloadavg()[0]
    server_pct = server_cpu.pct if server_cpu is not None else None
    server_wait = server_cpu.wait_pct if server_cpu is not None else None
    if not outcome.results:
        if outcome.interrupted:
            return _fail(err, EXIT_INTERRUPTED, "interrupted before any worker reported.")
        return _fail(err, EXIT_ERRORS, "no worker finished.", outcome.fatal or "")
    merged = merge(outcome.results)
    rep = report.build(cfg, merged, outcome, max_error_rate=args.max_error_rate,
                       server_cpu_pct=server_pct, server_wait_pct=server_wait,
                       loadavg=(round(load_before, 2), round(load_after, 2)))
    display.summary(console, rep)
    if args.json:
        report.write_json(rep, args.json)
        console.print(f"report: {args.json}", highlight=False)
    if args.plot:
        plot.write_plot(rep, args.plot)
        console.print(f"picture: {args.plot}", highlight=False)
    if outcome.fatal_kind == "fd_limit":
        return _fail(err, EXIT_LIMIT, "open-file limit too low.", outcome.fatal or "")
    if outcome.fatal:
        return _fail(err, EXIT_ERRORS, f"run failed: {outcome.fatal}")
    if outcome.interrupted:
        return _fail(err, EXIT_INTERRUPTED, "interrupted.")
    if not rep["ok"]:
        return _fail(err, EXIT_ERRORS,
                     f"error rate {rep['error_rate'] * 100:.3f}% is above "
                     f"--max-error-rate {args.max_error_rate * 100:g}%.")
    return EXIT_OK


def run() -> None:
    """Console entry point."""
    sys.exit(main())
