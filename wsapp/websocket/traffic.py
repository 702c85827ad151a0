"""Process-wide WebSocket traffic counters, read by /metrics and the dashboard.

Plain ints on one object: the per-message cost is an attribute increment.
"""

from __future__ import annotations


class Traffic:
    """Messages and payload bytes each way, slow readers cut off, and closes by final code."""

    __slots__ = ("messages_in", "bytes_in", "messages_out", "bytes_out", "closes",
                 "slow_consumer_drops")

    def __init__(self) -> None:
        self.messages_in = self.bytes_in = self.messages_out = self.bytes_out = 0
        self.slow_consumer_drops = 0
        self.closes: dict[int, int] = {}


TRAFFIC = Traffic()
