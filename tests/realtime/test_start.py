"""What the server opens at start (AppState.start): a store, broker or data_dir that cannot
work is a StartError naming its setting, not a 500 at first use; the data_dir and its
files are private, made so or tightened (wsapp/realtime/files.py)."""

from __future__ import annotations

import os
import stat

import pytest
from flask import Flask

from wsapp.realtime.ext import Realtime
from wsapp.realtime.files import private_dir, private_file, tighten_existing
from wsapp.realtime.state import StartError


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    """A umask that would leave new files world-readable (0644, folders 0755)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_files_are_made_private_and_loose_ones_tightened(tmp_path, loose_umask):
    folder = private_dir(tmp_path / "a" / "b")
    assert mode(folder) == 0o700
    assert mode(private_file(folder / "db")) == 0o600
    (tmp_path / "loose").mkdir(mode=0o755)
    assert mode(private_dir(tmp_path / "loose")) == 0o700
    wal = folder / "db-wal"
    wal.write_bytes(b"")
    wal.chmod(0o664)
    (folder / "db").chmod(0o644)
    tighten_existing(wal, folder / "db", folder / "absent")
    assert (mode(wal), mode(folder / "db")) == (0o600, 0o600)
    os.chmod(folder / "db", 0o400)  # never loosened: only group and other bits go
    tighten_existing(folder / "db")
    assert mode(folder / "db") == 0o400


def started(tmp_path, **config) -> Realtime:
    app = Flask(__name__)
    app.config.update({"WSAPP_DATA_DIR": str(tmp_path / "data"), **config})
    rt = Realtime(app)
    rt.state(app).start()
    return rt


@pytest.mark.parametrize(("config", "setting"), [
    ({"WSAPP_STORE": "sqlite:////proc/nope/x.db"}, "store: cannot open sqlite:////proc/nope"),
    ({"WSAPP_DATA_DIR": "/proc/nope"}, "data_dir: "),
    ({"WSAPP_STORE": "redis://127.0.0.1:notaport/0"}, "store: cannot open redis://"),
    ({"WSAPP_BROKER": "redis://:hunter2@127.0.0.1:x/0"}, "broker: cannot open redis://:***@"),
])
def test_what_cannot_be_opened_is_a_start_error_naming_its_setting(tmp_path, config, setting):
    with pytest.raises(StartError) as exc:
        started(tmp_path, **config)
    assert str(exc.value).startswith(setting), exc.value
    assert "hunter2" not in str(exc.value)


def test_start_makes_the_data_dir_and_its_files_private(tmp_path, loose_umask):
    rt = started(tmp_path)
    data = tmp_path / "data"
    try:
        assert mode(data) == 0o700
        assert {"wsapp.db", "secret"} <= set(os.listdir(data))
        assert {p.name: mode(p) for p in data.iterdir()} == {
            name: 0o600 for name in os.listdir(data)}
    finally:
        rt.state().hub.engines.close()
