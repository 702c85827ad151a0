"""The HTTP API under schemathesis, against the OpenAPI document the server itself serves
(GET /api/openapi.json): thousands of generated requests, valid and not, in production mode
(with and without the key) and in demo mode, and not one 5xx, not one traceback in the log.
Bounded by --max-time."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
import serverproc

MAX_TIME = 25  # seconds of generated requests per run


@pytest.mark.parametrize("mode", ["production", "demo"])
def test_no_request_makes_the_api_fail(start_server, mode):
    server = start_server(
                          *(["--api-key", "schema-key"] if mode == "production" else []))
    url = f"http://127.0.0.1:{server.port}/api/openapi.json"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert json.load(resp)["openapi"].startswith("3.")
    header = ["-H", "Authorization: Bearer schema-key"] if mode == "production" else []
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", url, *header, "--checks",
         "not_a_server_error", "--max-time", str(MAX_TIME), "--workers", "2",
         "--request-timeout", "10", "--no-color"],
        cwd=serverproc.ROOT, capture_output=True, text=True, timeout=MAX_TIME + 120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in server.log(), server.log()[-4000:]
