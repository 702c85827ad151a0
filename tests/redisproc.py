"""A real redis-server on a free loopback port, started (and stopped, by PID) by the tests.

Shared by the engine contract suites and the cluster tests. Tests sharing the session's server
keep apart by key prefix (`?prefix=` in the Redis URL).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import serverproc
from serverproc import free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"


class RedisServer:
    """A redis-server we start (and only we stop) on 127.0.0.1: without persistence, or with
    `aof=True` an append-only file fsynced on every write (`--appendfsync always`), so a
    SIGKILL and a start on the same port and workdir keep everything Redis acknowledged."""

    def __init__(self, workdir: Path, aof: bool = False) -> None:
        self.workdir = workdir
        self.aof = aof
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self, port: int | None = None, timeout: float = 10.0) -> RedisServer:
        """Start on `port` (a free one by default) and wait until it answers PING (with AOF:
        once the file is loaded, as Redis answers LOADING before)."""
        self.port = port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else \
            ["--appendonly", "no"]
        self.proc = serverproc.spawn(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *persistence, "--dir", str(self.workdir), "--protected-mode", "no"],
            self.workdir / "redis.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited {self.proc.returncode}: "
                                     f"{(self.workdir / 'redis.log').read_text()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def kill(self) -> None:
        """SIGKILL: an abrupt Redis failure."""
        serverproc.kill(self.proc)

    def stop(self) -> None:
        serverproc.stop(self.proc)
