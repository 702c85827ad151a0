"""`python -m wsapp [--port P] ...`: the same server and flags as serve.py (see wsapp.cli).

Its `--workers` master starts each worker as `python -m wsapp` too. Nothing is imported here
before main(), which monkey-patches first.
"""

import sys

from wsapp.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m wsapp", command=["-m", "wsapp"]))
