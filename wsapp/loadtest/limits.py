"""Operating-system limits a big run hits first: open files per process, local ports per address."""

from __future__ import annotations

import math
import resource


class LimitError(Exception):
    """A limit makes the run impossible as asked; the message says how to get past it."""


def raise_nofile(need: int, connections: int = 0, processes: int = 0) -> tuple[int, int]:
    """Raise this process's soft open-file limit to at least `need` (up to the hard limit).

    Children inherit it, so the coordinator calls this before starting workers. Returns the
    (soft, hard) limits now in force; raises LimitError when the hard limit is below `need`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new_soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        raise LimitError(nofile_advice(need, soft, hard, connections, processes))
    return soft, hard


def nofile_advice(need: int, soft: int, hard: int, connections: int = 0,
                  processes: int = 0) -> str:
    """Explain an open-file limit that is too low and the ways around it."""
    lines = [
        f"each client process needs about {need} open files, but the limit is {soft} "
        f"(hard limit {hard}).",
        "This tool already raises the soft limit (`ulimit -n`) up to the hard limit by itself;",
        "the hard limit needs root: `ulimit -Hn 65536` in a root shell, `nofile` in "
        "/etc/security/limits.conf, or LimitNOFILE= for a systemd service.",
    ]
    if connections and hard != resource.RLIM_INFINITY:
        per = max(int((hard - 64) / 1.05), 1)  # the inverse of options.files_needed
        lines.append(f"Or spread the clients over more processes: --processes "
                     f"{max(processes + 1, math.ceil(connections / per))}.")
    return "\n".join(lines)


def local_port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux); a common default elsewhere."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def check_ports(connections: int, source_ips: int) -> str | None:
    """A warning when the connections outnumber the local ports of the source addresses.

    One (source address, server address, port) triple has one ephemeral port range
    (~28k ports on Linux); more connections need more source addresses (--source-ips).
    """
    lo, hi = local_port_range()
    ports = hi - lo + 1
    usable = ports * max(source_ips, 1)
    if connections <= usable * 0.95:
        return None
    return (f"{connections} connections but only ~{usable} local ports "
            f"({ports} per source address x {max(source_ips, 1)} address(es)); "
            f"use --source-ips 127.0.0.1-127.0.0.{math.ceil(connections / (ports * 0.9))} "
            "to connect from more loopback addresses.")
