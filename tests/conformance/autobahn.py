#!/usr/bin/env python3
"""Autobahn|Testsuite conformance runner for wsapp's ``/ws/echo`` endpoint.

Installs the suite (it runs only on Python 2.7) into a gitignored cache, starts the
project's server on a free loopback port (unless ``--url`` is given), runs the
``fuzzingclient`` mode against it, prints a per-group table plus actionable details
for every failing case, and exits non-zero on any failure.

Exit status: 0 all selected cases passed; 1 at least one case failed (see below);
2 the run itself could not be done (install, server start, time-out, bad report).

A case fails when any of these hold (see README.md for the reasoning):
  * ``behavior`` is FAILED, UNIMPLEMENTED or anything not in OK / NON-STRICT /
    INFORMATIONAL;
  * ``behaviorClose`` is not OK or INFORMATIONAL (UNCLEAN, WRONG CODE,
    FAILED BY CLIENT, FAILED);
  * ``wasClean`` is false although ``behaviorClose`` is OK (Autobahn tolerates a
    dropped TCP connection where the spec does not *require* a clean close, but a
    conforming server always completes the closing handshake, so we do not);
  * the case was planned but is missing from the report.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("WSAPP_AUTOBAHN_CACHE", REPO_ROOT / ".cache" / "autobahn"))
DEFAULT_OUTDIR = REPO_ROOT / ".cache" / "autobahn-reports"

PY27_VERSION = "2.7.18"
# virtualenv 20.22 dropped support for creating Python 2 environments.
VIRTUALENV_REQ = "virtualenv>=20.21,<20.22"
# The full resolved set for autobahntestsuite 25.10.1 on CPython 2.7, pinned so that a
# fresh machine gets exactly what was verified (the suite's own metadata pins only part
# of it, and the rest would float to whatever still supports Python 2).
SUITE_PINS = (
    "autobahntestsuite==25.10.1",
    "autobahn[accelerate,twisted]==0.10.9",
    "Twisted==19.10.0",
    "txaio==2.1.0",
    "wsaccel==0.6.6",
    "ujson==2.0.3",
    "pyOpenSSL==19.1.0",
    "cryptography==3.3.2",
    "cffi==1.15.1",
    "pycparser==2.21",
    "enum34==1.1.10",
    "ipaddress==1.0.23",
    "six==1.16.0",
    "setuptools==44.0.0",
    "zope.interface==4.6.0",
    "incremental==16.10.1",
    "constantly==15.1.0",
    "Automat==22.10.0",
    "attrs==21.4.0",
    "hyperlink==21.0.0",
    "idna==2.10",
    "typing==3.10.0.0",
    "PyHamcrest==1.10.1",
    "jinja2==2.11.3",
    "markupsafe==1.1.1",
    "Werkzeug==1.0.1",
    "klein==17.10.0",
    "service-identity==18.1.0",
    "pyasn1==0.5.1",
    "pyasn1-modules==0.3.0",
    "unittest2==1.1.0",
    "linecache2==1.0.0",
    "traceback2==1.4.0",
    "argparse==1.4.0",
)

SERVER_ARGS = ("--max-message-size", "16777216", "--max-fragments", "1000000")
AGENT = "wsapp"
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED")
CLEAN_CLOSES = ("OK", "INFORMATIONAL")


class RunnerError(Exception):
    """The conformance run could not be carried out (as opposed to cases failing)."""


def log(msg: str) -> None:
    """Print a runner status line, flushed so it interleaves with child output."""
    print(f"autobahn: {msg}", flush=True)


# --------------------------------------------------------------------------- install


def _pyenv_roots() -> list[Path]:
    """Candidate pyenv roots: $PYENV_ROOT, `pyenv root`, then ~/.pyenv."""
    roots: list[Path] = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out:
                roots.append(Path(out))
    roots.append(Path.home() / ".pyenv")
    return roots


def find_python27() -> Path | None:
    """Locate a CPython 2.7 interpreter: $AUTOBAHN_PYTHON27, else pyenv's 2.7.18."""
    explicit = os.environ.get("AUTOBAHN_PYTHON27")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for root in _pyenv_roots():
        cand = root / "versions" / PY27_VERSION / "bin" / "python"
        if cand.is_file():
            return cand
    return None


def _venv_dir() -> Path:
    return CACHE_DIR / "venv"


def wstest_path() -> Path:
    """Path of the wstest console script inside the cached virtualenv."""
    return _venv_dir() / "bin" / "wstest"


def _install_fingerprint(py27: Path) -> str:
    data = "\n".join((str(py27), VIRTUALENV_REQ, *SUITE_PINS))
    return hashlib.sha256(data.encode()).hexdigest()


def _run_logged(cmd: Sequence[str], logfile: Path, env: dict[str, str] | None = None) -> None:
    """Run an install command, appending its output to logfile; raise with a tail on error."""
    with logfile.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            rc = subprocess.run(
                list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=1800
            ).returncode
        except subprocess.TimeoutExpired:
            raise RunnerError(f"install step took over 1800 s: {' '.join(cmd)}") from None
    if rc != 0:
        tail = "".join(logfile.read_text(errors="replace").splitlines(True)[-30:])
        raise RunnerError(f"install step failed (rc={rc}): {' '.join(cmd)}\n{tail}")


def _bootstrap_virtualenv(boot: Path, logfile: Path) -> None:
    """Install a Python-2-capable virtualenv into `boot` (uv when available, else pip)."""
    uv = shutil.which("uv")
    if uv:
        try:
            _run_logged([uv, "pip", "install", "--quiet", "--target", str(boot),
                         VIRTUALENV_REQ], logfile)
            return
        except RunnerError:
            log("uv could not install virtualenv, falling back to pip")
            shutil.rmtree(boot, ignore_errors=True)
    _run_logged([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--target", str(boot), VIRTUALENV_REQ], logfile)


def ensure_suite(force: bool = False) -> Path:
    """Install Autobahn|Testsuite into the cache if needed; return the wstest path.

    Idempotent and cheap when already installed: a stamp file holding a fingerprint of
    the interpreter and pins is compared first. A file lock serialises concurrent runs.
    """
    py27 = find_python27()
    if py27 is None:
        raise RunnerError(
            f"Python {PY27_VERSION} not found, and Autobahn|Testsuite runs only on Python 2.7. "
            f"Install it with `pyenv install {PY27_VERSION}`, or point AUTOBAHN_PYTHON27 at a "
            "CPython 2.7 interpreter."
        )
    fingerprint = _install_fingerprint(py27)
    stamp = CACHE_DIR / "installed.stamp"

    def installed() -> bool:
        return (not force and stamp.is_file() and stamp.read_text().strip() == fingerprint
                and wstest_path().is_file())

    if installed():
        log(f"suite already installed in {CACHE_DIR}")
        return wstest_path()

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():  # another process finished the install while we waited
            return wstest_path()
        started = time.monotonic()
        log(f"installing Autobahn|Testsuite into {CACHE_DIR} (Python {py27}) ...")
        stamp.unlink(missing_ok=True)
        logfile = CACHE_DIR / "install.log"
        logfile.write_text("")
        boot, venv = CACHE_DIR / "bootstrap", _venv_dir()
        shutil.rmtree(boot, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)

        check = subprocess.run([str(py27), "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
        if check.stdout.strip() != "(2, 7)":
            raise RunnerError(f"{py27} is not a Python 2.7 interpreter: "
                              f"{(check.stdout + check.stderr).strip()}")
        _bootstrap_virtualenv(boot, logfile)
        env = dict(os.environ, PYTHONPATH=str(boot))
        _run_logged([sys.executable, "-m", "virtualenv", "--no-periodic-update",
                     "--app-data", str(CACHE_DIR / "virtualenv-app-data"),
                     "-p", str(py27), str(venv)], logfile, env=env)

        reqs = CACHE_DIR / "requirements-py27.txt"
        reqs.write_text("\n".join(SUITE_PINS) + "\n")
        pip_env = dict(os.environ, PIP_NO_PYTHON_VERSION_WARNING="1",
                       PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        pip_env.pop("PYTHONPATH", None)
        _run_logged([str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar",
                     "off", "-r", str(reqs)], logfile, env=pip_env)
        _run_logged([str(venv / "bin" / "python"), "-c",
                     "import autobahntestsuite.wstest, autobahn, twisted, wsaccel"],
                    logfile, env=pip_env)
        if not wstest_path().is_file():
            raise RunnerError(f"install finished but {wstest_path()} is missing")
        stamp.write_text(fingerprint + "\n")
        log(f"suite installed in {time.monotonic() - started:.1f} s (log: {logfile})")
    return wstest_path()


# --------------------------------------------------------------------------- children


def _die_with_runner() -> None:
    """preexec_fn: have Linux SIGTERM this child if the runner dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------- server


def free_port() -> int:
    """Ask the kernel for a currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[Any], name: str, grace: float = 5.0) -> None:
    """Stop a child we started: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) ignored SIGTERM, killing it")
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


@contextlib.contextmanager
def project_server(outdir: Path, startup_timeout: float = 30.0) -> Iterator[str]:
    """Start `python serve.py` on a free loopback port; yield the echo URL; stop it after."""
    serve = REPO_ROOT / "serve.py"
    if not serve.is_file():
        raise RunnerError(f"{serve} does not exist; pass --url to test a running server")
    port = free_port()
    cmd = [sys.executable, str(serve), "--host", "127.0.0.1", "--port", str(port), *SERVER_ARGS,
           "--data-dir", str(outdir / "server-data")]  # keep its token secret out of the repo
    logfile = outdir / "server.log"
    log(f"starting server: {' '.join(cmd[1:])} (log: {logfile})")
    with logfile.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_server_env(),
                                start_new_session=True, preexec_fn=_die_with_runner)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RunnerError(f"server exited with rc={proc.returncode} before listening:\n"
                                  + _tail(logfile))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RunnerError(f"server did not listen on port {port} within "
                                  f"{startup_timeout:.0f} s:\n" + _tail(logfile))
            time.sleep(0.1)
        log(f"server pid {proc.pid} listening on 127.0.0.1:{port}")
        yield f"ws://127.0.0.1:{port}/ws/echo"
    finally:
        _stop(proc, "server")
        if proc.returncode not in (0, -signal.SIGTERM):
            log(f"server exited with rc={proc.returncode}; see {logfile}")


def _server_env() -> dict[str, str]:
    """Our environment minus the server's WSAPP_* settings, so only SERVER_ARGS apply."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WSAPP_") or k == "WSAPP_AUTOBAHN_CACHE"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- wstest


def run_wstest(wstest: Path, url: str, cases: list[str], exclude: list[str], outdir: Path,
               timeout: float, verbose: bool) -> list[str]:
    """Run the fuzzingclient against `url`; return the case ids wstest said it would run."""
    report_dir = outdir / "report"
    shutil.rmtree(report_dir, ignore_errors=True)
    spec = {
        "outdir": str(report_dir),
        "servers": [{"agent": AGENT, "url": url}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    logfile = outdir / "wstest.log"
    log(f"running wstest fuzzingclient against {url} (cases {cases}, exclude {exclude}, "
        f"time bound {timeout:.0f} s, log: {logfile})")

    planned: list[str] = []
    current = {"case": "", "group": ""}
    proc = subprocess.Popen([str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
                            cwd=outdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace",
                            start_new_session=True, preexec_fn=_die_with_runner)
    started = time.monotonic()

    def pump() -> None:
        assert proc.stdout is not None
        with logfile.open("w") as fh:
            for line in proc.stdout:
                fh.write(line)
                fh.flush()  # so the log can be followed while the run goes on
                if line.startswith("Cases = "):
                    with contextlib.suppress(ValueError, SyntaxError):
                        planned.extend(ast.literal_eval(line[len("Cases = "):].strip()))
                    log(f"wstest will run {len(planned)} cases")
                m = re.match(r"Running test case ID (\S+)", line)
                if m:
                    current["case"] = m.group(1)
                    group = m.group(1).split(".")[0]
                    if verbose:
                        print(line.rstrip(), flush=True)
                    elif group != current["group"]:
                        current["group"] = group
                        log(f"  group {group} ... (t={time.monotonic() - started:.0f} s)")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RunnerError(f"wstest exceeded its time bound of {timeout:.0f} s while running "
                          f"case {current['case'] or '?'}; see {logfile}") from None
    finally:
        if proc.poll() is None:  # KeyboardInterrupt or another error: stop our child
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
    log(f"wstest finished in {time.monotonic() - started:.1f} s (rc={rc})")
    if rc != 0:
        raise RunnerError(f"wstest exited with rc={rc}:\n" + _tail(logfile))
    return planned


# --------------------------------------------------------------------------- report


@dataclass
class CaseResult:
    """One case's outcome, with the per-case report fields a developer needs."""

    case_id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    was_clean: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> int:
        return int(self.case_id.split(".")[0])

    @property
    def unclean(self) -> bool:
        """Close not OK by Autobahn, or TCP dropped without closing handshake."""
        if self.behavior == "MISSING":  # never ran: counted as FAILED, not as unclean
            return False
        if self.behavior_close not in CLEAN_CLOSES:
            return True
        return self.behavior_close == "OK" and self.was_clean is False

    @property
    def failed(self) -> bool:
        return self.behavior not in ("OK", "NON-STRICT", "INFORMATIONAL") or self.unclean


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split(".") if p.isdigit())


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    return str(value).lower() == "true"


def parse_report(report_dir: Path, planned: Sequence[str]) -> list[CaseResult]:
    """Read index.json and each case's JSON; planned-but-missing cases become FAILED."""
    index_path = report_dir / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise RunnerError(f"cannot read {index_path}: {exc}") from exc
    if AGENT not in index:
        raise RunnerError(f"{index_path} has no results for agent {AGENT!r}")
    results: list[CaseResult] = []
    for case_id, entry in index[AGENT].items():
        detail: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, KeyError):
            detail = json.loads((report_dir / entry["reportfile"]).read_text())
        results.append(CaseResult(
            case_id=case_id,
            behavior=str(entry.get("behavior")),
            behavior_close=str(entry.get("behaviorClose")),
            duration_ms=int(entry.get("duration") or 0),
            was_clean=_as_bool(detail.get("wasClean")),
            details=dict(detail, reportfile=entry.get("reportfile"),
                         remoteCloseCode=entry.get("remoteCloseCode")),
        ))
    seen = {r.case_id for r in results}
    for case_id in planned:
        if case_id not in seen:
            results.append(CaseResult(case_id, "MISSING", "MISSING", 0, None, {
                "result": "case was planned by wstest but is absent from index.json"}))
    results.sort(key=lambda r: _case_key(r.case_id))
    return results


def format_table(results: Sequence[CaseResult]) -> str:
    """Per-group table: counts by behavior, unclean closes and summed case durations."""
    cols = ("group", "cases", "OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED",
            "UNCLEAN", "seconds")
    rows: list[list[str]] = []
    groups = sorted({r.group for r in results})

    def row(label: str, rs: Sequence[CaseResult]) -> list[str]:
        counts = {b: sum(r.behavior == b for r in rs) for b in BEHAVIORS}
        other = sum(r.behavior not in BEHAVIORS for r in rs)  # MISSING or unknown: failed
        return [label, str(len(rs)), *(str(counts[b] + (other if b == "FAILED" else 0))
                                       for b in BEHAVIORS),
                str(sum(r.unclean for r in rs)), f"{sum(r.duration_ms for r in rs) / 1000:.1f}"]

    for g in groups:
        rows.append(row(str(g), [r for r in results if r.group == g]))
    rows.append(row("total", results))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for i, r in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def _clean_text(value: Any, limit: int = 400) -> str:
    text = re.sub(r"<[^>]+>", " ", str(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _header(http: Any, name: str) -> str:
    """A header's value from the raw HTTP request/response text kept in the case report."""
    for line in str(http or "").split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return ""


def format_failures(results: Sequence[CaseResult], report_dir: Path, max_details: int) -> str:
    """Describe failing cases: full detail for the first `max_details`, one line for the rest."""
    failing = [r for r in results if r.failed]
    if not failing:
        return ""
    out = [f"{len(failing)} failing case(s) (HTML reports: {report_dir / 'index.html'}):"]
    for n, r in enumerate(failing):
        d = r.details
        head = (f"  {r.case_id}: behavior={r.behavior} close={r.behavior_close} "
                f"wasClean={r.was_clean} remoteCloseCode={d.get('remoteCloseCode')}")
        if n >= max_details:
            out.append(head + f" -- {_clean_text(d.get('description', ''), 100)}")
            continue
        out.append(head)
        for key in ("description", "expectation", "result", "resultClose",
                    "wasNotCleanReason", "expectedClose", "expected", "received"):
            value = d.get(key)
            if value not in (None, "", "None"):
                out.append(f"      {key}: {_clean_text(value)}")
        if r.behavior == "UNIMPLEMENTED":
            offered = _header(d.get("httpRequest"), "sec-websocket-extensions")
            accepted = _header(d.get("httpResponse"), "sec-websocket-extensions")
            out.append(f"      extensions offered: {offered or '-'}; accepted: {accepted or '-'}")
        if d.get("reportfile"):
            html = str(d["reportfile"]).replace(".json", ".html")
            out.append(f"      report: {report_dir / html}")
    return "\n".join(out)


def summary(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Machine-readable summary written next to the report."""
    return {
        "cases": len(results),
        "failed": [r.case_id for r in results if r.failed],
        "by_case": {r.case_id: {"behavior": r.behavior, "behaviorClose": r.behavior_close,
                                "wasClean": r.was_clean, "duration_ms": r.duration_ms}
                    for r in results},
    }


# --------------------------------------------------------------------------- main


def _split(values: Sequence[str] | None, default: list[str]) -> list[str]:
    if not values:
        return default
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", action="append",
                   help="comma-separated case patterns, e.g. '1.*,2.*' (default: '*', all 517)")
    p.add_argument("--exclude", action="append", help="comma-separated case patterns to skip")
    p.add_argument("--url", help="test this running server instead of starting serve.py")
    p.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR,
                   help="where spec, logs and the report go (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5400.0,
                   help="time bound for wstest in seconds (default: %(default)s)")
    p.add_argument("--max-details", type=int, default=40,
                   help="failing cases shown in full; the rest get one line (default: 40)")
    p.add_argument("--install-only", action="store_true", help="install the suite and exit")
    p.add_argument("--reinstall", action="store_true", help="reinstall even if cached")
    p.add_argument("-v", "--verbose", action="store_true", help="echo every case as it starts")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Install, serve, run, report; return the process exit status."""
    args = parse_args(argv)
    wall = time.monotonic()
    # SIGTERM (e.g. a CI time-out) and SIGINT (even if inherited as ignored) unwind through
    # the finally blocks, so the server and wstest we started are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        wstest = ensure_suite(force=args.reinstall)
        if args.install_only:
            return 0
        outdir = args.outdir.resolve()
        outdir.mkdir(parents=True, exist_ok=True)
        cases, exclude = _split(args.cases, ["*"]), _split(args.exclude, [])
        with contextlib.ExitStack() as stack:
            url = args.url or stack.enter_context(project_server(outdir))
            planned = run_wstest(wstest, url, cases, exclude, outdir, args.timeout, args.verbose)
        results = parse_report(outdir / "report", planned)
    except RunnerError as exc:
        log(f"ERROR: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    if not results:
        log("ERROR: the selection matched no case")
        return 2
    (outdir / "summary.json").write_text(json.dumps(summary(results), indent=1) + "\n")
    print()
    print(format_table(results))
    print()
    failures = format_failures(results, outdir / "report", args.max_details)
    n_failed = sum(r.failed for r in results)
    if failures:
        print(failures)
        print()
    verdict = (f"PASS: all {len(results)} cases passed" if n_failed == 0
               else f"FAIL: {n_failed} of {len(results)} cases failed")
    print(f"autobahn: {verdict} (wall time {time.monotonic() - wall:.1f} s)", flush=True)
    return 0 if n_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
