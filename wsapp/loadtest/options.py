"""The run's settings (one picklable object handed to every worker) and option parsing helpers."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SCENARIOS = ("idle", "echo", "broadcast", "churn", "chat")

# Path used when --url has none: the echo endpoint needs no app protocol; rooms need /ws.
DEFAULT_PATHS = {"idle": "/ws/echo", "echo": "/ws/echo", "churn": "/ws/echo",
                 "broadcast": "/ws", "chat": "/ws"}
# --rate when not given (see docs/loadtest.md for what the rate means in each scenario).
DEFAULT_RATES = {"idle": 0.0, "echo": 0.0, "broadcast": 1.0, "churn": 50.0, "chat": 0.2}


@dataclass
class Config:
    """Everything a worker needs to run its share of a scenario."""

    scenario: str
    url: str
    connections: int = 100
    duration: float = 10.0
    rate: float = 0.0
    size: int = 32
    ramp: float = 0.0
    processes: int = 1
    source_ips: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    connect_concurrency: int = 100
    drain: float = 10.0
    channel: str = ""
    rooms: int = 0
    token: str = ""
    origin: str = ""
    origin_time: float = 0.0  # wall-clock start of the run; timelines count seconds from it

    def slot(self) -> float:
        """Timeline resolution: 1 s, finer for short runs so the picture has enough points."""
        return max(0.1, min(1.0, round(self.duration / 50, 1)))

    def per_process(self, index: int) -> int:
        """How many of the connections worker `index` owns (indices i with i % P == index)."""
        return len(range(index, self.connections, self.processes))

    def as_report(self) -> dict[str, Any]:
        """The options as they appear in the JSON report (the token is not echoed)."""
        d = asdict(self)
        d.pop("token")
        d.pop("origin_time")
        return d


def resolve_url(url: str, scenario: str) -> str:
    """Add the scenario's default path when the URL has none; accept http:// as ws://."""
    u = urlsplit(url if "://" in url else "ws://" + url)
    scheme = {"http": "ws", "https": "wss"}.get(u.scheme, u.scheme)
    path = u.path if u.path not in ("", "/") else DEFAULT_PATHS[scenario]
    return urlunsplit((scheme, u.netloc, path, u.query, ""))


def parse_source_ips(spec: str) -> list[str]:
    """Expand '127.0.0.1-127.0.0.8', '127.0.0.1-8' or a comma list (mixing both) to addresses."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "-" in part:
            lo_s, hi_s = (s.strip() for s in part.split("-", 1))
            lo = ipaddress.ip_address(lo_s)
            if "." not in hi_s and ":" not in hi_s:  # '127.0.0.1-8': last octet only
                hi_s = lo_s.rsplit(".", 1)[0] + "." + hi_s
            hi = ipaddress.ip_address(hi_s)
            if hi.version != lo.version or int(hi) < int(lo):
                raise ValueError(f"bad address range {part!r}")
            if int(hi) - int(lo) >= 4096:
                raise ValueError(f"address range {part!r} is too large (max 4096)")
            out += [str(ipaddress.ip_address(i)) for i in range(int(lo), int(hi) + 1)]
        else:
            out.append(str(ipaddress.ip_address(part)))
    if not out:
        raise ValueError("no addresses in --source-ips")
    return out


def files_needed(cfg: Config) -> int:
    """Open files one worker needs: its share of the connections plus a margin."""
    share = math.ceil(cfg.connections / cfg.processes)
    # +1 publisher, and headroom for the pipe, logs, shared libraries, sockets in closing.
    return share + 64 + (share // 20)
