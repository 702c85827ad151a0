"""`--workers N`: N server processes on one port, supervised by this one.

The master never serves. For each worker it opens a listening socket with SO_REUSEPORT on
the same address and hands it over (an inherited file descriptor named in WSAPP_LISTEN_FD),
then closes its own copy: the kernel spreads new connections over the workers' sockets, and a
dead worker's socket dies with it instead of queueing connections nobody will accept. Each
worker is a fresh run of the entry the master was started with (`serve.py`, `python -m
wsapp` or the `wsapp` script; same flags, `--workers 1`), so it monkey-patches and imports
exactly like a single server, from the same code.

Supervision: a worker that exits on its own is restarted (after a backoff that grows while it
keeps dying young); SIGTERM or SIGINT to the master is forwarded to every worker as SIGTERM
(each closes its WebSockets with 1001 within shutdown_timeout), and the master exits once all
are gone, killing any still there after shutdown_timeout + GRACE seconds.

Workers share state only through Redis, so a memory broker is refused: its publishes would
never reach the other workers' subscribers.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import gevent
from gevent.event import Event

from wsapp.config import Settings

log = logging.getLogger("wsapp.workers")

LISTEN_FD_ENV = "WSAPP_LISTEN_FD"
WORKER_ENV = "WSAPP_WORKER"
GRACE = 5.0  # seconds past shutdown_timeout before a worker that will not stop is killed
YOUNG = 10.0  # a worker dying sooner than this after its start counts as crash-looping
MAX_BACKOFF = 10.0
_SHARED = ("redis://", "rediss://", "unix://")


def inherited_listener() -> socket.socket | None:
    """The listening socket the master handed this worker, or None when run on its own."""
    fd = os.environ.pop(LISTEN_FD_ENV, None)
    if not fd:
        return None
    return socket.socket(fileno=int(fd))


def check_settings(settings: Settings) -> str | None:
    """Why these settings cannot run several workers (None when they can)."""
    n = settings.workers
    if not settings.broker.startswith(_SHARED):
        return (f"--workers {n} needs a broker all workers share: add --broker "
                f"redis://HOST:PORT/DB (the {settings.broker or 'memory'!r} broker reaches "
                "only its own process, so a publish on one worker would miss the "
                "subscribers of the others)")
    if settings.store and not settings.store.startswith(_SHARED):
        return (f"--workers {n} needs the store in Redis too (offsets, history and pushes "
                f"must be global): use --store redis://…, or leave --store unset to use the "
                f"broker's Redis (got {settings.store!r})")
    return None


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT (several may share host:port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class Worker:
    """One supervised worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.failures = 0  # consecutive young deaths


class Master:
    """Starts, watches, restarts and stops the workers."""

    def __init__(self, settings: Settings, argv: list[str], command: list[str]) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.command = list(command)  # after the interpreter: a script path, or -m wsapp
        self.port = settings.port
        self.refused = False  # a worker exited 2 at start: the master exits 2 too
        self.workers = [Worker(i + 1) for i in range(settings.workers)]
        self.stopping = Event()

    def spawn(self, worker: Worker) -> None:
        """Start (or restart) one worker on a fresh SO_REUSEPORT socket."""
        s = self.settings
        sock = listen_socket(s.host, self.port, getattr(s, "backlog", 2048))
        try:
            env = dict(os.environ)
            env[LISTEN_FD_ENV] = str(sock.fileno())
            env[WORKER_ENV] = str(worker.index)
            # Later flags win: the same settings, as one worker on the inherited socket.
            argv = [sys.executable, *self.command, *self.argv, "--workers", "1",
                    "--port", str(self.port), "--store", s.store or s.broker]
            worker.proc = subprocess.Popen(argv, env=env, pass_fds=(sock.fileno(),))
        finally:
            sock.close()  # the worker holds it now; ours would keep a dead worker's queue
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def start(self) -> None:
        """Claim the port, then start every worker."""
        s = self.settings
        # The first socket settles the port (a free one when --port 0) before any worker.
        probe = listen_socket(s.host, s.port)
        self.port = probe.getsockname()[1]
        probe.close()
        for worker in self.workers:
            self.spawn(worker)
        log.info("master %d: %d workers on http://%s:%d/", os.getpid(), len(self.workers),
                 s.host, self.port)

    def supervise(self) -> None:
        """Restart workers that exit on their own, until asked to stop."""
        while not self.stopping.is_set():
            for worker in self.workers:
                proc = worker.proc
                if proc is None or proc.poll() is None or self.stopping.is_set():
                    continue
                age = time.monotonic() - worker.started
                if proc.returncode == 2 and worker.failures == 0 and age < YOUNG:
                    # Exit 2 is a setting the worker could not use (it printed which):
                    # every restart would refuse it too.
                    log.error("worker %d refused its settings at start (exit 2): stopping",
                              worker.index)
                    self.refused = True
                    self.stopping.set()
                    return
                worker.failures = worker.failures + 1 if age < YOUNG else 0
                delay = 0.0 if worker.failures <= 1 else min(MAX_BACKOFF,
                                                              0.5 * 2 ** worker.failures)
                log.warning("worker %d (pid %d) exited with %s after %.1fs; restarting%s",
                            worker.index, proc.pid, _status(proc.returncode), age,
                            f" in {delay:.1f}s" if delay else "")
                worker.proc = None
                gevent.spawn(self._restart_later, worker, delay)
            self.stopping.wait(0.2)

    def _restart_later(self, worker: Worker, delay: float) -> None:
        if delay and self.stopping.wait(delay):
            return
        if not self.stopping.is_set():
            try:
                self.spawn(worker)
            except OSError as exc:
                log.error("worker %d could not be restarted: %s", worker.index, exc)
                worker.started = time.monotonic()
                gevent.spawn(self._restart_later, worker, MAX_BACKOFF)

    def stop(self) -> int:
        """SIGTERM every worker, wait for them (killing stragglers); the exit status."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + GRACE
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time: killing it", proc.pid)
                proc.kill()
                proc.wait(10)
        log.info("master %d: all workers stopped", os.getpid())
        return 2 if self.refused else 0


def run_master(settings: Settings, argv: list[str], command: list[str],
               prog: str = "serve.py") -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT, each started as
    `python COMMAND ARGV --workers 1` (COMMAND: serve.py's path, `-m wsapp`, ...); `prog`
    names the program in the error printed for settings that cannot have workers."""
    problem = check_settings(settings)
    if problem:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2
    master = Master(settings, argv, command)
    try:
        master.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        master.stop()
        return 2

    def on_signal() -> None:
        if not master.stopping.is_set():
            log.info("master: signal received, stopping workers")
            master.stopping.set()

    handlers = [gevent.signal_handler(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        master.supervise()
    finally:
        for h in handlers:
            h.cancel()
    return master.stop()


def _status(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
