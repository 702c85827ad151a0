"""The request checks of wsapp.websocket.httpguard, with plain data."""

from __future__ import annotations

import pytest

from wsapp.websocket.httpguard import default_hosts, host_allowed, host_name, redact_query


@pytest.mark.parametrize("bind,hosts", [
    ("127.0.0.1", ["localhost", "127.0.0.1", "[::1]"]),
    ("127.0.0.2", ["localhost", "127.0.0.1", "[::1]", "127.0.0.2"]),
    ("::1", ["localhost", "127.0.0.1", "[::1]"]),
    ("localhost", ["localhost", "127.0.0.1", "[::1]"]),
    ("0.0.0.0", ["*"]),  # a public server's names are the operator's to list
    ("10.1.2.3", ["*"]),
])
def test_default_hosts_guard_loopback_only(bind, hosts):
    assert default_hosts(bind) == hosts


def test_default_hosts_of_several_listeners():
    assert default_hosts("127.0.0.1", "::1") == ["localhost", "127.0.0.1", "[::1]"]
    assert default_hosts("127.0.0.1", "10.0.0.1") == ["*"]
    assert default_hosts() == ["*"]


@pytest.mark.parametrize("host,name", [
    ("Example.COM:8080", "example.com"), ("[::1]:5000", "[::1]"), ("[::1]", "[::1]"),
    ("127.0.0.1", "127.0.0.1"), (" localhost ", "localhost"),
])
def test_host_name_drops_the_port(host, name):
    assert host_name(host) == name


LOOPBACK = default_hosts("127.0.0.1")


@pytest.mark.parametrize("host,allowed,ok", [
    ("127.0.0.1:5000", LOOPBACK, True),
    ("localhost:5000", LOOPBACK, True),
    ("LOCALHOST", LOOPBACK, True),
    ("app.localhost:5000", LOOPBACK, True),  # browsers resolve *.localhost to loopback
    ("[::1]:5000", LOOPBACK, True),
    ("rebind.example:5000", LOOPBACK, False),  # DNS rebinding
    ("localhost.rebind.example", LOOPBACK, False),
    ("127.0.0.1.rebind.example", LOOPBACK, False),
    ("", LOOPBACK, False),
    (None, LOOPBACK, True),  # no Host at all: not a browser
    ("anything", ["*"], True),
    ("anything", [], True),  # nothing configured: no check
    ("push.example.com.", ["push.example.com"], True),  # the fully qualified form
    ("a.b.apps.example", [".apps.example"], True),
    ("apps.example", [".apps.example"], True),
    ("evilapps.example", [".apps.example"], False),
])
def test_host_allowed(host, allowed, ok):
    assert host_allowed(host, allowed) is ok


@pytest.mark.parametrize("text,redacted", [
    ("GET /ws?token=abc.def.ghi HTTP/1.1", "GET /ws?token=*** HTTP/1.1"),
    ("GET /x?a=1&access_token=s3&b=2 HTTP/1.1", "GET /x?a=1&access_token=***&b=2 HTTP/1.1"),
    ("GET /x?API_KEY=k&Password=p HTTP/1.1", "GET /x?API_KEY=***&Password=*** HTTP/1.1"),
    ("GET /x?tokens=1&mytoken=2 HTTP/1.1", "GET /x?tokens=1&mytoken=2 HTTP/1.1"),  # not ours
    ("GET /token=x HTTP/1.1", "GET /token=x HTTP/1.1"),  # in the path, not a parameter
    ('x - - [t] "GET /ws?token=x" 400 1 0.1', 'x - - [t] "GET /ws?token=***" 400 1 0.1'),
    ("?secret=x", "?secret=***"),
])
def test_redact_query(text, redacted):
    assert redact_query(text) == redacted
