"""Signed user tokens and the API key check.

A token is `base64url(json {"u": user, "exp": epoch_s}) "." base64url(HMAC-SHA256)`: the
server verifies it without storage, and every process sharing the secret accepts it. The
secret is WSAPP_SECRET, or one generated on first run and kept in data_dir so that tokens
survive restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path

USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(configured: str, data_dir: str) -> bytes:
    """The signing secret: the configured one, else one kept in `data_dir/secret`."""
    if configured:
        return configured.encode("utf-8")
    path = Path(data_dir) / "secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode("ascii")
    # O_EXCL: two processes starting at once agree on whichever wrote first.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


class TokenSigner:
    """Mints and verifies user tokens with one secret."""

    def __init__(self, secret: bytes, ttl: float = 86400.0) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def mint(self, user: str, ttl: float | None = None) -> tuple[str, int]:
        """A token for `user` and its expiry (epoch seconds); ValueError for a bad user id."""
        if not isinstance(user, str) or not USER_RE.match(user):
            raise ValueError("user must be 1-64 characters of A-Z a-z 0-9 _ . @ -")
        expires = int(time.time() + (self.ttl if ttl is None else ttl))
        body = _b64(json.dumps({"u": user, "exp": expires}, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}", expires

    def verify(self, token: str) -> str:
        """The user id a token names; ValueError saying why when it is not valid."""
        body, dot, sig = (token or "").partition(".")
        if not dot or not body or not sig:
            raise ValueError("malformed token")
        if not hmac.compare_digest(sig, self._sign(body)):
            raise ValueError("bad signature")
        try:
            claims = json.loads(_unb64(body))
            user, expires = claims["u"], claims["exp"]
        except (ValueError, KeyError, TypeError):
            raise ValueError("malformed token") from None
        if time.time() > expires:
            raise ValueError("token expired")
        return user


def api_key_ok(configured: str, authorization: str | None) -> bool:
    """Whether an `Authorization: Bearer KEY` header matches the configured key (or none is set)."""
    if not configured:
        return True
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), configured)
