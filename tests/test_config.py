"""Settings from defaults, env vars and flags; README's table matches the code."""

from pathlib import Path

import pytest

from wsapp.config import Settings, build_parser, from_args, from_env, markdown_table
from wsapp.realtime.options import RealtimeOptions
from wsapp.websocket.options import WebSocketOptions, field_sections

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults():
    s = Settings()
    assert (s.host, s.port, s.max_message_size) == ("127.0.0.1", 5000, 1 << 20)
    assert s.store_url() == "sqlite:///data/wsapp.db"


def test_env_then_flags():
    env = {"WSAPP_PORT": "6000", "WSAPP_PING_INTERVAL": "2.5", "WSAPP_DEFLATE": "off"}
    s = from_env(env)
    assert (s.port, s.ping_interval, s.deflate) == (6000, 2.5, False)
    s = from_args(["--port", "7000", "--deflate"], env)
    assert (s.port, s.deflate) == (7000, True)


def test_repeatable_quota_flag():
    s = from_args(["--quota", "promo=3/day", "--quota", "total=20/day"], {})
    assert s.quota == "promo=3/day,total=20/day"


@pytest.mark.parametrize("argv,says", [
    (["--port", "x"], "cannot read"),
    (["--ping-timeout", "soon"], "cannot read"),
    (["--port", "70000"], "port"),
    (["--max-message-size", "-1"], "max_message_size"),
    (["--handshake-timeout", "-1"], "handshake_timeout"),
    (["--log-level", "LOUD"], "log_level"),
])
def test_bad_values_exit_with_a_message(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        from_args(argv, {})
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


def test_bad_env_value_names_the_field():
    with pytest.raises(ValueError, match="max_connections"):
        from_env({"WSAPP_MAX_CONNECTIONS": "many"})


def test_origins():
    s = Settings(allowed_origins=" https://A.example/ , http://b:8080,,")
    assert s.origins() == ["https://a.example", "http://b:8080"]


def test_readme_configuration_table_is_current():
    assert markdown_table() in README.read_text("utf-8"), (
        "README's configuration table is stale: paste the output of "
        "`python -c 'from wsapp.config import markdown_table; print(markdown_table())'`")


def test_one_class_per_layer_three_sections():
    assert issubclass(Settings, RealtimeOptions) and issubclass(Settings, WebSocketOptions)
    assert [title for title, _ in field_sections(Settings)] == ["Server", "WebSocket",
                                                               "Real-time"]
    text = build_parser().format_help()
    positions = [text.index(f"{title} settings:") for title in ("Server", "WebSocket",
                                                                 "Real-time")]
    assert positions == sorted(positions)
    assert text.index("--port") < text.index("--max-backlog") < text.index("--rate-messages")


def test_replace_keeps_the_class():
    s = Settings().replace(port=1)
    assert type(s) is Settings and s.port == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.7", "example.org"])
def test_demo_mode_refuses_to_listen_beyond_loopback(host):
    with pytest.raises(ValueError, match="demo mode"):
        Settings(host=host).validate()
    Settings(host=host, api_key="k").validate()  # a key: not demo mode
    Settings(host=host, public_demo=True).validate()  # said on purpose


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "localhost"])
def test_demo_mode_on_loopback_is_fine(host):
    Settings(host=host).validate()


def test_a_data_dir_that_is_a_file_is_refused_at_start(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="data_dir: .* is not a directory"):
        Settings(data_dir=str(tmp_path / "file")).validate()
    Settings(data_dir=str(tmp_path / "to" / "be" / "made")).validate()


@pytest.mark.parametrize("flag,value,says", [
    ("--store", "postgres://db/x", "store"), ("--broker", "kafka://k", "broker"),
    ("--quota", "promo=lots", "quota"), ("--jwt-algorithm", "HS512", "jwt_algorithm"),
    ("--secret", "short", "secret"), ("--channels", "{not json", "channels"),
    ("--url-prefix", "rt/", "url_prefix"),
])
def test_bad_engine_and_policy_settings_fail_at_start(flag, value, says, capsys):
    with pytest.raises(SystemExit) as exc:
        from_args([flag, value])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err
