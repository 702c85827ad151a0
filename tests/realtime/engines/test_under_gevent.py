"""Runs the broker and presence contract suites in a child pytest patched by gevent first
(see conftest.py): their engines read the bus in greenlets, as they do in a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import serverproc

from realtime.engines.conftest import NEED_GEVENT, UNDER_GEVENT

HERE = Path(__file__).resolve().parent
CHILD = ("from gevent import monkey; monkey.patch_all()\n"
         "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))")


@pytest.mark.skipif(UNDER_GEVENT, reason="this is the child run")
@pytest.mark.parametrize("module", NEED_GEVENT)
def test_contract_suite_under_gevent(module):
    result = subprocess.run(
        # (anyio's pytest plugin imports trio, which gevent's patching breaks: not needed)
        [sys.executable, "-c", CHILD, str(HERE / module), "-q", "-p", "no:cacheprovider",
         "-p", "no:anyio", "--rootdir", str(serverproc.ROOT)],
        cwd=serverproc.ROOT, env=serverproc.clean_env(), capture_output=True, text=True,
        timeout=180)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
