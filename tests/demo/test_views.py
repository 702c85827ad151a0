"""The demo's pages in-process (Flask's test client): the JS client imported through an import
map that follows rt.client_url, a Content-Security-Policy that allows exactly that inline
script by its hash, and headers that stay on the demo's own responses."""

from __future__ import annotations

import base64
import gc
import hashlib
import re

import gevent
import pytest
from flask import Flask

from wsapp import Realtime, create_app
from wsapp.config import Settings
from wsapp.demo import init_app

PAGES = ("/", "/echo", "/dashboard", "/tasks", "/chat", "/console", "/inbox")
IMPORTMAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


def importmap_and_csp(client, path: str) -> tuple[str, str]:
    resp = client.get(path)
    assert resp.status_code == 200, path
    [text] = IMPORTMAP.findall(resp.get_data(as_text=True))
    return text, resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("prefix", ["", "/rt"])
def test_pages_import_the_client_from_its_url_allowed_by_hash(tmp_path, prefix):
    app = create_app(Settings(data_dir=str(tmp_path), url_prefix=prefix))
    client = app.test_client()
    for path in PAGES:
        text, csp = importmap_and_csp(client, path)
        assert text == f'{{"imports": {{"wsapp": "{prefix}/wsapp.js"}}}}'
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"script-src 'self' 'sha256-{digest}';" in csp  # that script, nothing else
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert client.get(f"{prefix}/wsapp.js").status_code == 200


def test_the_demos_headers_stay_on_its_own_responses(tmp_path):
    app = Flask("host")
    app.config["WSAPP_DATA_DIR"] = str(tmp_path)

    @app.route("/host")
    def host_page():
        return "<p>the host's own page</p>"

    init_app(app, Realtime(app))
    client = app.test_client()
    demo = client.get("/chat")
    assert "Content-Security-Policy" in demo.headers
    assert demo.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/demo/static/page.js").headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/host", "/no/such/page", "/api/config", "/healthz"):
        resp = client.get(path)
        assert "Content-Security-Policy" not in resp.headers, path
    assert "X-Content-Type-Options" not in client.get("/host").headers


def test_with_an_api_key_pages_say_how_to_sign_in_and_where(tmp_path):
    app = create_app(Settings(data_dir=str(tmp_path), api_key="k", url_prefix="/rt"))
    page = app.test_client().get("/tasks", base_url="http://example.test:8000")
    html = page.get_data(as_text=True)
    assert 'data-demo="false"' in html and "Demo mode" not in html
    assert "curl -s -X POST http://example.test:8000/rt/api/tokens" in html
    demo = create_app(Settings(data_dir=str(tmp_path / "d"))).test_client().get("/tasks")
    assert 'data-demo="true"' in demo.get_data(as_text=True)


def test_serving_pages_starts_no_greenlet_until_the_dashboard_is_watched(tmp_path):
    def greenlets() -> int:
        return sum(isinstance(o, gevent.Greenlet) for o in gc.get_objects())

    before = greenlets()
    app = create_app(Settings(data_dir=str(tmp_path)))
    client = app.test_client()
    for path in PAGES:
        assert client.get(path).status_code == 200
    assert greenlets() == before
    assert "dashboard" not in app.extensions["wsapp.demo"]
