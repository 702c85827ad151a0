"""The package as a user gets it: the sdist and the wheel built from it, installed into a fresh
virtualenv (dependencies from the package index), and the installed server run from a
directory outside the checkout, so neither the checkout's templates/ nor its wsapp/ can stand
in for what the wheel forgot.

The builds and installs use uv (tests/requirements.txt); a warm cache makes them ~1 s each.
"""

from __future__ import annotations

import ast
import email
import json
import re
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import serverproc
import websocket
from serverproc import ROOT, free_port, read_log, wait_children, wait_listening

PAGES = ["/", "/echo", "/dashboard", "/tasks", "/chat", "/console", "/inbox"]
BUILD_TIMEOUT = 180  # seconds for one build or install (the first may download from the index)
# Installed, the server must not import the checkout: no PYTHONPATH (empty counts as unset).
NO_CHECKOUT = {"PYTHONPATH": ""}


def run(argv: list[str], timeout: float = BUILD_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Run to completion; AssertionError with its output if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


def uv(*args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "uv", *args])


class Venv:
    """A fresh virtualenv with the wheel installed (plus `extras`), and a directory outside
    the checkout to run it in."""

    def __init__(self, base: Path, wheel: Path, extras: str = "") -> None:
        self.base = base
        self.bin = base / "venv" / "bin"
        self.python = str(self.bin / "python")
        self.cwd = base / "elsewhere"
        self.cwd.mkdir()
        uv("venv", "-q", "--python", sys.executable, str(base / "venv"))
        uv("pip", "install", "-q", "--python", self.python,
           f"wsapp{extras} @ {wheel.as_uri()}")

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command of the venv to completion (exit status not checked)."""
        return subprocess.run(argv, cwd=self.cwd, env=serverproc.clean_env(**NO_CHECKOUT),
                              capture_output=True, text=True, timeout=timeout)

    @contextmanager
    def serving(self, argv: list[str], port: int, env: dict[str, str] | None = None,
                name: str = "server") -> Iterator[subprocess.Popen]:
        """A server of the venv, listening on `port` for the block; then SIGTERM, which it
        must obey with exit status 0, and no traceback in its log."""
        log = self.base / f"{name}.log"
        proc = serverproc.spawn(argv, log, env={**NO_CHECKOUT, **(env or {})}, cwd=self.cwd)
        try:
            wait_listening(proc, port, log, timeout=30)
            yield proc
        finally:
            code = serverproc.stop(proc, timeout=30)
        assert code == 0, read_log(log, 4000)
        assert "Traceback" not in read_log(log), read_log(log, 4000)


def get(port: int, path: str) -> bytes:
    """The body of a GET that must answer 200."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        assert resp.status == 200, path
        return resp.read()


def assert_echo(port: int, text: str) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/echo", timeout=10)
    try:
        ws.send(text)
        assert ws.recv() == text
    finally:
        ws.close(timeout=5)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """'sdist': the wheel built from the sdist (uv build's default); 'tree': the wheel built
    straight from the checkout, as `pip install .` does."""
    base = tmp_path_factory.mktemp("dist")
    uv("build", "-q", "-o", str(base / "sdist"), str(ROOT))
    uv("build", "-q", "--wheel", "-o", str(base / "tree"), str(ROOT))
    found = {kind: list((base / kind).glob("wsapp-*.whl")) for kind in ("sdist", "tree")}
    assert all(len(w) == 1 for w in found.values()), found
    assert list((base / "sdist").glob("wsapp-*.tar.gz")), "no sdist"
    return {kind: w[0] for kind, w in found.items()}


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheels) -> Venv:
    """The wheel alone, without extras: what `pip install wsapp` gives."""
    return Venv(tmp_path_factory.mktemp("bare"), wheels["sdist"])


@pytest.fixture(scope="module")
def full_venv(tmp_path_factory, wheels) -> Venv:
    """The wheel with the redis and gunicorn extras (README's deployment install)."""
    return Venv(tmp_path_factory.mktemp("full"), wheels["sdist"], "[redis,gunicorn]")


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_the_wheel_carries_every_package_file_and_the_templates(wheels):
    files = wheel_files(wheels["sdist"])
    # every file under wsapp/ (git ignores only bytecode there), whatever its kind: page
    # scripts, wsapp.js, Lua scripts
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "wsapp").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    templates = {f"wsapp/demo/templates/{p.name}" for p in (ROOT / "templates").iterdir()}
    assert {"wsapp/realtime/static/wsapp.js", "wsapp/demo/static/style.css",
            "wsapp/demo/templates/index.html"} <= package | templates
    assert package | templates <= files, sorted(package | templates - files)
    extra = {f for f in files if not f.startswith(("wsapp/", "wsapp-"))}
    assert not extra, extra  # no tests, no top-level templates/ or serve.py
    # a wheel built straight from the tree has the same files as the one from the sdist
    assert wheel_files(wheels["tree"]) == files


def _distribution(module: str, installed: dict[str, list[str]]) -> str:
    """The distribution providing an importable top-level `module`, normalised."""
    names = installed.get(module)
    assert names, f"{module} is imported but not installed here"
    return re.sub(r"[-_.]+", "-", names[0]).lower()


def test_runtime_dependencies_are_exactly_what_the_server_imports(wheels):
    """Requires-Dist without an extra == the distributions imported by wsapp/ outside the
    load tester, the Redis engine, the feeds' sources and the gunicorn worker; those are
    extras."""
    imported: dict[str, set[str]] = {"": set(), "redis": set(), "gunicorn": set(),
                                     "loadtest": set(), "amqp": set(), "postgres": set()}
    installed = packages_distributions()
    for path in (ROOT / "wsapp").rglob("*.py"):
        rel = path.relative_to(ROOT / "wsapp").as_posix()
        extra = ("loadtest" if rel.startswith("loadtest/") else
                 "redis" if rel.startswith("realtime/engines/redis/") else
                 "redis" if rel == "realtime/feeds/redis_stream.py" else
                 "amqp" if rel == "realtime/feeds/rabbitmq.py" else
                 "postgres" if rel == "realtime/feeds/postgres.py" else
                 "gunicorn" if rel == "gunicorn.py" else "")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names}:
                if top not in sys.stdlib_module_names and top not in ("wsapp", "__future__"):
                    imported[extra].add(_distribution(top, installed))
    with zipfile.ZipFile(wheels["sdist"]) as z:
        meta = email.message_from_bytes(z.read(next(n for n in z.namelist()
                                                    if n.endswith(".dist-info/METADATA"))))
    declared: dict[str, set[str]] = {k: set() for k in (*imported, "keys")}
    for req in meta.get_all("Requires-Dist"):
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", req).group()).lower()
        extra = re.search(r"extra == ['\"](\w+)['\"]", req)
        declared[extra.group(1) if extra else ""].add(name)
    assert declared[""] == imported[""]
    for extra in ("redis", "gunicorn", "loadtest", "amqp", "postgres"):
        assert imported[extra] - imported[""] == declared[extra], extra
    assert declared["keys"] == {"cryptography"}  # PyJWT's RS256/ES256 (imported by PyJWT)


def test_the_installed_server_serves_every_page_from_outside_the_checkout(venv):
    where = venv.run(venv.python, "-c", "import wsapp; print(wsapp.__file__)")
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout, where
    port = free_port()
    with venv.serving([venv.python, "-m", "wsapp", "--host", "127.0.0.1", "--port", str(port),
                       "--data-dir", str(venv.base / "data")], port):
        for page in PAGES:
            assert b"/demo/static/style.css" in get(port, page), page  # base.html rendered
        # each static file, byte for byte: the package's copy reached the wheel
        statics = {"/wsapp.js": ROOT / "wsapp/realtime/static/wsapp.js",
                   **{f"/demo/static/{p.name}": p
                      for p in (ROOT / "wsapp/demo/static").iterdir()}}
        for path, source in statics.items():
            assert get(port, path) == source.read_bytes(), path
        assert json.loads(get(port, "/healthz"))["status"] == "ok"
        assert_echo(port, "from the wheel")
    # the server ran without the extras: redis and gunicorn are not installed at all
    missing = venv.run(venv.python, "-c", "import redis")
    assert "No module named 'redis'" in missing.stderr


def test_every_entry_imports_nothing_of_sockets_before_gevent_patches(venv):
    """The entries import wsapp.cli and call main(), which patches first: importing it (and
    the package) must not import socket, ssl or threading yet. Checked in the fresh venv,
    whose interpreter starts without them."""
    probe = ("import sys; import wsapp.cli; "
             "print(sorted({'socket', 'ssl', 'threading', 'select'} & set(sys.modules)))")
    result = venv.run(venv.python, "-c", probe)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result


def test_the_console_script_and_module_answer_help_and_name_themselves_in_errors(venv):
    script = str(venv.bin / "wsapp")
    helped = venv.run(script, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: wsapp ") and "--data-dir" in helped.stdout
    for argv, prog in (([script], "wsapp"), ([venv.python, "-m", "wsapp"], "python -m wsapp")):
        bad = venv.run(*argv, "--port", "abc")
        assert bad.returncode == 2, bad
        assert bad.stderr.splitlines() == [f"{prog}: error: --port: cannot read 'abc' as int",
                                           f"Run '{prog} --help' to see every flag."], bad.stderr


@pytest.mark.parametrize("entry", ["script", "module"])
def test_workers_rerun_the_entry_the_master_was_started_with(full_venv, redis_server, entry):
    command = ([str(full_venv.bin / "wsapp")] if entry == "script"
               else ["-m", "wsapp"])
    port = free_port()
    with full_venv.serving(
            [full_venv.python, *command, "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--broker", redis_server.url(f"pkg-{entry}"), "--secret", "s" * 32,
             "--data-dir", str(full_venv.base / "data")], port, name=f"workers-{entry}") as proc:
        for pid in wait_children(proc.pid, 2):
            # a child just forked has not exec'd yet: its cmdline is the master's, or empty
            deadline = time.monotonic() + 10
            while True:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if [a.decode() for a in argv[1:1 + len(command)]] == command:
                    break
                assert time.monotonic() < deadline, argv
                time.sleep(0.05)
        get(port, "/chat")
        assert_echo(port, entry)


def test_the_documented_gunicorn_line_runs_after_installing_its_extras(full_venv, redis_server):
    # the deployment text lives in docs/deploying.md; README may carry a copy of it
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs/deploying.md").read_text()
    assert "pip install '.[gunicorn,redis]'" in docs
    line = re.search(r"gunicorn -k wsapp\.gunicorn\.Worker .*\\\n\s+-b \S+ '(.+?)'", docs)
    assert line, "the gunicorn line moved"
    port = free_port()
    url = redis_server.url("pkg-gunicorn")
    with full_venv.serving(
            # gunicorn 27's control socket sits at one path per user: tests running beside
            # each other must not share it.
            [str(full_venv.bin / "gunicorn"), "-k", "wsapp.gunicorn.Worker", "-w", "2",
             "--worker-connections", "1000", "-b", f"127.0.0.1:{port}", "--no-control-socket",
             line.group(1)], port,
            env={"WSAPP_BROKER": url, "WSAPP_STORE": url, "WSAPP_SECRET": "s" * 32,
                 "WSAPP_API_KEY": "k", "WSAPP_DATA_DIR": str(full_venv.base / "gdata")},
            name="gunicorn"):
        get(port, "/tasks")
        assert_echo(port, "gunicorn")
