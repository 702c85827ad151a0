"""Entry point for `python -m wsapp.loadtest`."""

import sys

from wsapp.loadtest.cli import main

if __name__ == "__main__":
    sys.exit(main())
