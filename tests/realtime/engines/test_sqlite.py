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


def test_the_database_and_its_folder_are_private(tmp_path):
    import os
    import stat

    s = SQLiteStore(f"sqlite:///{tmp_path}/data/private.db")
    s.apply([("publish", "room:p", "m1", None, int(time.time() * 1000), "1")])
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
        for name in ("private.db", "private.db-wal"):
            assert stat.S_IMODE(os.stat(tmp_path / "data" / name).st_mode) == 0o600, name
    finally:
        s.close()
