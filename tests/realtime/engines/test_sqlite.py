"""What only the SQLite store does: survive a reopen, and read its URLs."""

import time

import pytest

from wsapp.realtime.engines.sqlite import SQLiteStore, sqlite_path


def test_data_survives_reopen(tmp_path):
    url = f"sqlite:///{tmp_path}/re.db"
    s = SQLiteStore(url)
    t = int(time.time() * 1000)
    s.apply([("push", "ann", "p1", t, '"x"', None, t + 60_000, {}),
             ("publish", "room:r", "m1", None, t, "1")])
    s.close()
    s2 = SQLiteStore(url)
    assert s2.pending("ann", t)[0]["data"] == "x" and s2.last_offset("room:r") == 1
    s2.close()


@pytest.mark.parametrize("url,path", [
    ("sqlite:///rel/x.db", "rel/x.db"),
    ("sqlite:////abs/x.db", "/abs/x.db"),
    ("sqlite:///:memory:", ":memory:"),
])
def test_sqlite_urls(url, path):
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://x.db", "sqlite:///"])
def test_bad_sqlite_urls(url):
    with pytest.raises(ValueError):
        sqlite_path(url)
