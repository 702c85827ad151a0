"""engines/__init__.py: the one place a URL picks an engine, and engines opened on first use."""

from __future__ import annotations

import pytest

from realtime.engines.conftest import EngineSettings
from wsapp.realtime.engines import Engines, check_url, open_engine, shared, store_url
from wsapp.realtime.engines.memory import LocalPresence, MemoryBroker, MemoryStore
from wsapp.realtime.engines.sqlite import SQLiteStore


@pytest.mark.parametrize("kind,url,cls", [
    ("store", "memory", MemoryStore),
    ("broker", "memory", MemoryBroker),
    ("presence", "memory", LocalPresence),
])
def test_memory_urls(kind, url, cls):
    assert isinstance(open_engine(kind, url, EngineSettings()), cls)


def test_the_default_store_is_sqlite_in_the_data_dir(tmp_path):
    settings = EngineSettings(data_dir=str(tmp_path))
    assert store_url(settings) == f"sqlite:///{tmp_path}/wsapp.db"
    store = open_engine("store", store_url(settings), settings)
    try:
        assert isinstance(store, SQLiteStore) and store.path == f"{tmp_path}/wsapp.db"
    finally:
        store.close()


@pytest.mark.parametrize("kind,url,message", [
    ("store", "postgres://db/x", "not a sqlite URL"),
    ("store", "sqlite://x.db", "not a sqlite URL"),
    ("broker", "kafka://k", "broker: unsupported URL"),
    ("broker", "", "broker: unsupported URL"),
    ("presence", "sqlite:///x.db", "presence: unsupported URL"),
])
def test_bad_urls_are_refused_with_a_reason(kind, url, message):
    with pytest.raises(ValueError, match=message):
        check_url(kind, url)


@pytest.mark.parametrize("url,is_shared", [
    ("redis://h:6379/0", True), ("rediss://h/1", True), ("unix:///run/redis.sock", True),
    ("memory", False), ("sqlite:///x.db", False)])
def test_which_urls_reach_other_processes(url, is_shared):
    assert shared(url) is is_shared


def test_engines_open_on_first_use_and_report_health(tmp_path):
    engines = Engines(EngineSettings(data_dir=str(tmp_path)))
    assert engines.opened() == {} and engines.health() == {}
    assert not (tmp_path / "wsapp.db").exists()  # nothing opened: no file
    engines.broker  # noqa: B018
    assert set(engines.health()) == {"broker"}
    engines.store  # noqa: B018
    assert engines.health()["store"]["engine"] == "sqlite"
    engines.close()


def test_engines_handed_in_take_the_place_of_configured_ones():
    store = MemoryStore()
    engines = Engines(EngineSettings(store="sqlite:////nonexistent/x.db"), store=store)
    assert engines.store is store
