"""Tests of the real-time layer: the /ws app protocol, fan-out, limits and metrics."""
