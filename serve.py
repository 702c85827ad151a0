"""Run wsapp from a checkout: `python serve.py [--host H] [--port P] ...` (every flag also a
WSAPP_* env var). The same server as `python -m wsapp` and the installed `wsapp` script.

Nothing may be imported here before main(): it monkey-patches first (see wsapp/cli.py).
"""

import sys

from wsapp.cli import main

if __name__ == "__main__":
    sys.exit(main())
