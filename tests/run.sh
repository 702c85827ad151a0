#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs them.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Python packages (uv when it can be had: ~1 s instead of ~10 s for pip).
# requirements.txt runs the server; tests/requirements.txt adds the test toolchain.
reqs=(-r requirements.txt -r tests/requirements.txt)
if python3 -m pip install -q "$(grep -m1 '^uv==' tests/requirements.txt)" >/dev/null 2>&1 && python3 -m uv --version >/dev/null 2>&1; then
  python3 -m uv pip install --system -q "${reqs[@]}"
else
  python3 -m pip install -q "${reqs[@]}"
fi

# System packages the tests drive for real (a Redis server, a browser), installed only if absent.
need=()
for pkg in chromium redis-server ${WSAPP_TEST_APT:-}; do
  command -v "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "tests need these system packages: ${need[*]} (install them as root)" >&2
    exit 1
  fi
fi

python3 -m ruff check .
# The architecture's contracts: imports point down the layers, no cycles (pyproject.toml),
# and every engine provably implements its protocol (mypy on the WebSocket and real-time layers).
PYTHONPATH=. python3 -c 'from importlinter.cli import lint_imports_command; lint_imports_command()' \
  --no-cache
python3 -m mypy wsapp/websocket wsapp/realtime
python3 -m pytest "$@"
