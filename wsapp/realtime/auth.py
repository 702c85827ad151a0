"""Who a connection is: standard JWTs (RFC 7519) checked by PyJWT, and the API key check.

A token names its user in `sub` and must carry `exp`; `channels` (optional) grants channels
or fnmatch patterns the bearer may subscribe to beyond the default rules (a private job
board, say). Any service can mint one with its own JWT library:

- HS256 (the default) with the shared secret (`WSAPP_SECRET`, at least 32 bytes as RFC 7518
  §3.2 asks; generated once into data_dir when unset);
- RS256 or ES256 with a key pair: wsapp checks with the public key, and mints only if it is
  given the private one too, so another service can be the only issuer.

Exactly the configured algorithm is accepted: `none`, and an HS256 token forged with an
RS256 public key as its secret, are refused. `iss` and `aud` are checked when configured.
A user's tokens can be revoked: those issued before the revocation are refused (the store
keeps the time, so every process sees it).
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from wsapp.realtime.files import private_dir, tighten_existing

USER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_SECRET = 32  # bytes: RFC 7518 §3.2 for HS256
ALGORITHMS = ("HS256", "RS256", "ES256")


class TokenError(ValueError):
    """A token that names nobody; the message says why (sent to the client with 4401)."""


@dataclass(frozen=True)
class Identity:
    """What a valid token says."""

    user: str
    channels: tuple[str, ...] = ()
    issued: float | None = None  # `iat`, when the token has one
    expires: float = 0.0


def valid_user(user: Any) -> bool:
    """Whether `user` is a user id: 1-64 of A-Z a-z 0-9 _ . @ - (the whole string)."""
    return isinstance(user, str) and USER_RE.fullmatch(user) is not None


def load_secret(configured: str, data_dir: str) -> bytes:
    """The HS256 secret: the configured one, else one kept in `data_dir/secret` (0600)."""
    if configured:
        return configured.encode("utf-8")
    path = private_dir(data_dir) / "secret"
    try:
        tighten_existing(path)
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_hex(32).encode("ascii")
    # O_EXCL: two processes starting at once agree on whichever wrote first.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


def check_secret(secret: bytes) -> None:
    """ValueError unless `secret` is long enough for HS256 (RFC 7518 §3.2)."""
    if len(secret) < MIN_SECRET:
        raise ValueError(f"secret: at least {MIN_SECRET} bytes for HS256 (RFC 7518 §3.2), got "
                         f"{len(secret)}; make one with: python -c 'import secrets; "
                         "print(secrets.token_hex(32))'")


def read_key(value: str) -> str:
    """A PEM key given inline, or `@/path/to/key.pem` for one in a file."""
    return Path(value[1:]).read_text("utf-8") if value.startswith("@") else value


class Tokens:
    """Mints and checks user JWTs with one algorithm and key."""

    def __init__(self, *, algorithm: str = "HS256", secret: bytes = b"",
                 public_key: str = "", private_key: str = "", ttl: float = 86400.0,
                 issuer: str = "", audience: str = "", leeway: float = 1.0) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"jwt_algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if algorithm == "HS256":
            check_secret(secret)
            self._check_key: Any = secret
            self._mint_key: Any = secret
        else:
            if not public_key:
                raise ValueError(f"jwt_public_key: {algorithm} needs the public key (PEM, or "
                                 "@/path/to/key.pem)")
            self._check_key = read_key(public_key)
            self._mint_key = read_key(private_key) if private_key else None
        self.algorithm = algorithm
        self.ttl = ttl
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    @property
    def can_mint(self) -> bool:
        """False when only another service holds the private key."""
        return self._mint_key is not None

    def mint(self, user: str, ttl: float | None = None,
             channels: Sequence[str] = ()) -> tuple[str, int]:
        """A token for `user` and its expiry (epoch seconds); ValueError for a bad user id."""
        if not valid_user(user):
            raise ValueError("user must be 1-64 characters of A-Z a-z 0-9 _ . @ -")
        if self._mint_key is None:
            raise ValueError(f"this server checks {self.algorithm} tokens but has no private "
                             "key to mint them (jwt_private_key)")
        now = int(time.time())
        expires = int(now + (self.ttl if ttl is None else ttl))
        claims: dict[str, Any] = {"sub": user, "iat": now, "exp": expires}
        if channels:
            claims["channels"] = list(channels)
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        return jwt.encode(claims, self._mint_key, algorithm=self.algorithm), expires

    def verify(self, token: str) -> Identity:
        """What a token says; TokenError saying why when it names nobody."""
        try:
            claims = jwt.decode(
                token, self._check_key, algorithms=[self.algorithm], leeway=self.leeway,
                issuer=self.issuer or None, audience=self.audience or None,
                options={"require": ["exp", "sub"], "verify_aud": bool(self.audience)})
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token has no '{exc.claim}' claim") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError(f"token algorithm not allowed (this server takes "
                             f"{self.algorithm})") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad signature") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise TokenError(f"token {exc}") from None
        except (jwt.InvalidTokenError, UnicodeError):
            raise TokenError("malformed token") from None
        user = claims["sub"]
        if not valid_user(user):
            raise TokenError("token 'sub' is not a user id (1-64 of A-Z a-z 0-9 _ . @ -)")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise TokenError("token 'channels' must be a list of channel names")
        issued = claims.get("iat")
        return Identity(user, tuple(channels),
                        float(issued) if isinstance(issued, (int, float)) else None,
                        float(claims["exp"]))


def api_key_ok(configured: str, authorization: str | None) -> bool:
    """Whether `Authorization: Bearer KEY` matches the configured key (or none is set)."""
    if not configured:
        return True
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8"), configured.encode("utf-8"))
