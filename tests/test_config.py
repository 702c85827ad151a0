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


@pytest.mark.parametrize("argv,env,says", [
    (["--port", "x"], {}, "--port: cannot read 'x' as int"),
    (["--ping-timeout", "soon"], {}, "--ping-timeout: cannot read 'soon' as float"),
    (["--port", "70000"], {}, "--port: 70000 is not in 0..65535"),
    (["--max-message-size", "-1"], {}, "--max-message-size: must be at least 1, got -1"),
    (["--handshake-timeout", "-1"], {}, "--handshake-timeout: must be greater than 0"),
    (["--log-level", "LOUD"], {}, "--log-level: 'LOUD' is not DEBUG"),
    (["--workers", "0"], {}, "--workers: must be at least 1, got 0"),
    (["--workers", "-2"], {}, "--workers: must be at least 1, got -2"),
    (["--port"], {}, "--port: expected one argument"),
    (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    ([], {"WSAPP_WORKERS": "0"}, "WSAPP_WORKERS: must be at least 1, got 0"),
    ([], {"WSAPP_PORT": "x"}, "WSAPP_PORT: cannot read 'x' as int"),
    (["--jwt-algorithm", "RS256"], {}, "--jwt-public-key: RS256 needs the public key"),
    (["--feed", "amqp://h/"], {}, "--feed amqp://h/: needs ?queue=NAME"),
    ([], {"WSAPP_FEED": "amqp://h/"}, "WSAPP_FEED amqp://h/: needs ?queue=NAME"),
])
def test_a_bad_setting_is_one_line_naming_the_flag_then_a_pointer_to_help(argv, env, says,
                                                                          capsys):
    with pytest.raises(SystemExit) as exc:
        from_args(argv, env, prog="serve.py")
    assert exc.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    first, pointer = out.err.splitlines()  # two lines, not the usage block
    assert first.startswith(f"serve.py: error: {says}"), out.err
    assert pointer == "Run 'serve.py --help' to see every flag."


def test_a_flag_names_itself_even_when_the_environment_set_it_too(capsys):
    with pytest.raises(SystemExit):
        from_args(["--workers", "0"], {"WSAPP_WORKERS": "2"})
    assert "--workers: must be at least 1" in capsys.readouterr().err


def test_bad_env_value_names_the_variable():
    with pytest.raises(ValueError, match="^WSAPP_MAX_CONNECTIONS: "):
        from_env({"WSAPP_MAX_CONNECTIONS": "many"})
    with pytest.raises(ValueError, match="^WSAPP_QUOTA: bad quota"):
        from_env({"WSAPP_QUOTA": "x"})


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
    ("--store", "postgres://db/x", "--store: not a sqlite URL"),
    ("--broker", "kafka://k", "--broker: unsupported URL"),
    ("--quota", "promo=lots", "bad quota"), ("--jwt-algorithm", "HS512", "--jwt-algorithm"),
    ("--secret", "short", "--secret: at least 32 bytes"), ("--channels", "{not json", "--channels"),
    ("--url-prefix", "rt/", "--url-prefix"), ("--turn-bytes", "0", "--turn-bytes"),
    ("--send-timeout", "soon", "--send-timeout"), ("--max-replay-hold", "-5", "--max-replay-hold"),
])
def test_bad_engine_and_policy_settings_fail_at_start(flag, value, says, capsys):
    with pytest.raises(SystemExit) as exc:
        from_args([flag, value])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("argv,says", [
    (["--max-body-size", "0"], "--max-body-size: must be at least 1"),
    (["--max-body-size", "1000"], "--max-body-size: 1000 bytes cannot carry a publish"),
    (["--max-publish-size", "2000000"], "--max-body-size: 1048576 bytes cannot carry"),
    (["--body-timeout", "0"], "--body-timeout: must be greater than 0"),
    (["--allowed-hosts", "https://example.com"], "--allowed-hosts: 'https://example.com' is not"),
    (["--allowed-hosts", "example.com:8000"], "--allowed-hosts: 'example.com:8000' is not"),
])
def test_bad_http_limits_fail_at_start(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        from_args(argv)
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


def test_http_limits_read_from_flags():
    s = from_args(["--max-body-size", "2000000", "--body-timeout", "5",
                   "--allowed-hosts", "Push.Example.com, .apps.example,[::1],10.0.0.1,*"])
    assert (s.max_body_size, s.body_timeout) == (2000000, 5.0)
    assert s.hosts() == ["push.example.com", ".apps.example", "[::1]", "10.0.0.1", "*"]


def test_help_shows_every_flag_as_written():
    """A help text with a % sign ("~10% smaller") once printed argparse's internals."""
    text = build_parser().format_help()
    assert "~10% smaller" in text and "option_strings" not in text
