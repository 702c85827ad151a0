"""One Settings object for the whole server, filled from defaults, WSAPP_* env vars and CLI flags.

Every field is a flag (`--max-message-size`) and an environment variable
(`WSAPP_MAX_MESSAGE_SIZE`); the flag wins over the variable, the variable over the default.
Each layer declares its own fields: `WebSocketOptions` (wsapp.websocket.options), then
`RealtimeOptions` (wsapp.realtime.options), then the server's own here; one class, three
sections in --help and in README's table.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import NoReturn, TypeVar

from wsapp.realtime.options import RealtimeOptions
from wsapp.websocket import options
from wsapp.websocket.httpguard import loopback
from wsapp.websocket.options import MIB, convert, env_name, field_kind, field_sections

__all__ = ["MIB", "Settings", "build_parser", "env_name", "from_args", "from_env",
           "loopback", "markdown_table"]

T = TypeVar("T", bound="Settings")


@dataclass
class Settings(RealtimeOptions):
    """Server configuration; `help` metadata doubles as the CLI and README documentation."""

    section = "Server"

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=5000, metadata={"help": "TCP port to listen on"})
    workers: int = field(
        default=1,
        metadata={"help": "processes serving the port (SO_REUSEPORT, supervised); "
                          "> 1 needs --broker redis://..."},
    )
    backlog: int = field(
        default=2048,
        metadata={"help": "listen backlog: handshakes the kernel queues (capped by somaxconn)"},
    )
    shutdown_timeout: float = field(
        default=5.0, metadata={"help": "seconds graceful shutdown waits for connections to close"}
    )
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    public_demo: bool = field(
        default=False,
        metadata={"help": "allow demo mode (no --api-key: anyone may mint any user's token) "
                          "on an address other than loopback"},
    )

    def validate(self: T) -> T:
        """Raise ValueError naming the first setting out of range; return self."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not in 0..65535")
        super().validate()
        self.check(at_least_one=("backlog", "workers"), not_negative=("shutdown_timeout",))
        if not self.api_key and not self.public_demo and not loopback(self.host):
            raise ValueError(f"host: demo mode (no --api-key: anyone may mint any user's token "
                             f"and read anyone's messages) refuses to listen on {self.host}; "
                             "set --api-key, or --public-demo to allow it")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level: {self.log_level!r} is not DEBUG, INFO, WARNING or "
                             "ERROR")
        return self


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults overridden by WSAPP_* variables; a ValueError names the
    variable (`WSAPP_QUOTA: bad quota ...`) when the bad value came from one."""
    try:
        return Settings.from_env(environ)
    except ValueError as exc:
        raise ValueError(_where(str(exc), set(), environ)) from None


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a mistake is reported in one line naming the flag and the
    reason, then where the flags are listed: the 40-line usage block would bury the one
    line that matters (it was the last one)."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)  # "--port: expected ..."
        self.exit(2, f"{self.prog}: error: {message}\n"
                     f"Run '{self.prog} --help' to see every flag.\n")


def build_parser(prog: str = "serve.py") -> argparse.ArgumentParser:
    """An argparse parser with one flag per Settings field, grouped by layer."""
    parser = Parser(prog=prog, description="wsapp: real-time push for Flask")
    for title, group in field_sections(Settings):
        section = parser.add_argument_group(f"{title} settings")
        for f in group:
            flag = "--" + f.name.replace("_", "-")
            doc = f"{f.metadata.get('help', '')} (env {env_name(f.name)}, default {f.default!r})"
            doc = doc.replace("%", "%%")  # argparse formats help with %: "~10% smaller" broke it
            if f.metadata.get("repeat"):
                section.add_argument(flag, dest=f.name, action="append", default=None,
                                     metavar=f.name.upper(), help=doc)
            elif field_kind(f) is bool:
                section.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                     default=None, help=doc)
            else:
                section.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                                     help=doc)
    return parser


def from_args(argv: Sequence[str] | None = None,
              environ: Mapping[str, str] | None = None, prog: str = "serve.py") -> Settings:
    """Settings from CLI flags over env vars over defaults; exits with a message on bad input
    (`prog` names the program in it)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    given = {name for name, raw in vars(args).items() if raw is not None}
    try:
        settings = from_env(environ)
        by_name = {f.name: f for f in fields(Settings)}
        for name in given:
            raw = getattr(args, name)
            if isinstance(raw, list):  # a repeatable flag: join its values
                raw = ",".join(raw)
            value = raw if isinstance(raw, bool) else convert(by_name[name], raw)
            setattr(settings, name, value)
        settings.validate()
    except ValueError as exc:
        parser.error(_where(str(exc), given, environ))
    return settings


def setting_error(message: str, argv: Sequence[str] | None = None,
                  prog: str = "serve.py") -> NoReturn:
    """Exit 2 with the one-line error of a setting found bad only when the server opened what
    it names at start (a store file that cannot be made, say), naming the flag or variable
    as a bad flag value is named."""
    parser = build_parser(prog)
    given = {name for name, raw in vars(parser.parse_args(argv)).items() if raw is not None}
    parser.error(_where(message, given, None))


def _where(message: str, given: set[str], environ: Mapping[str, str] | None) -> str:
    """A settings error ("max_connections: ...", "feed URL: ...") naming what the user wrote:
    the flag, or the environment variable when the value came from there only."""
    name, sep, rest = message.partition(" " if message.startswith("feed ") else ": ")
    if not sep or name not in {f.name for f in fields(Settings)}:
        return message
    if name not in given and env_name(name) in (os.environ if environ is None else environ):
        return f"{env_name(name)}{sep}{rest}"
    return f"--{name.replace('_', '-')}{sep}{rest}"


def markdown_table() -> str:
    """The configuration tables for README, generated so the docs cannot drift from the code."""
    return options.markdown_table(Settings)
