"""The demo's server side, driven the way its pages drive it: serve.py in a subprocess and
websocket-client connections speaking the /ws protocol (tests/realtime/helpers.py)."""

from __future__ import annotations

import pytest
from realtime.helpers import RealtimeServer


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """serve.py in demo mode (one 'promo' push a day per user), shared by one module."""
    server = RealtimeServer(tmp_path_factory.mktemp("demo"), ["--quota", "promo=1/day"]).start()
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-4000:]
