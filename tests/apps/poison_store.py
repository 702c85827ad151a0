"""Test app: serve.py's app (same flags) on a SQLite store that refuses every batch holding a
push whose category is "poison", as a store refuses a write it cannot take (a constraint, a
value it cannot encode). The API's validation lets such a push through on purpose: the test
is of the batch writer, which must store the innocent jobs of that batch anyway.

Run like serve.py: `python tests/apps/poison_store.py --port P`.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402

from wsapp.app import create_app  # noqa: E402
from wsapp.config import from_args  # noqa: E402
from wsapp.realtime.engines.sqlite import SQLiteStore  # noqa: E402
from wsapp.realtime.state import state_of  # noqa: E402
from wsapp.server import make_server, serve_forever  # noqa: E402


class PoisonStore(SQLiteStore):
    """Refuses (rolls back) any batch with a push in category "poison"."""

    def _apply(self, jobs):
        if any(job[0] == "push" and job[5] == "poison" for job in jobs):
            raise sqlite3.IntegrityError("this store refuses category 'poison'")
        return super()._apply(jobs)


def main() -> None:
    settings = from_args(sys.argv[1:], prog="poison_store.py")
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    hub = state_of(app).hub
    # handed in as a test hands an engine to Engines: it takes the configured one's place
    hub.engines.__dict__["store"] = PoisonStore(settings.store_url(), settings.history_size,
                                                settings.history_ttl, settings.key_ttl)
    server = make_server(app, settings)
    serve_forever(server, settings)


if __name__ == "__main__":
    main()
