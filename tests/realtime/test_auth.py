"""auth.py: JWTs minted here or by another service with PyJWT (HS256, RS256, ES256), every
refusal with its reason, the generated secret, the API key."""

from __future__ import annotations

import base64
import json
import os
import stat
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsapp.realtime.auth import TokenError, Tokens, api_key_ok, load_secret, valid_user

SECRET = b"s" * 32


def pem(key, private: bool) -> str:
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def claims(**extra):
    return {"sub": "alice", "exp": int(time.time()) + 60, "iat": int(time.time()), **extra}


def test_mint_and_verify_round_trip():
    tokens = Tokens(secret=SECRET)
    token, expires = tokens.mint("alice", channels=("job:7",))
    identity = tokens.verify(token)
    assert identity.user == "alice" and identity.channels == ("job:7",)
    assert expires > time.time() and identity.issued and identity.expires == expires


def test_a_token_minted_by_another_service_with_pyjwt_is_accepted():
    token = jwt.encode(claims(channels=["room:*"]), SECRET, algorithm="HS256")
    identity = Tokens(secret=SECRET).verify(token)
    assert (identity.user, identity.channels) == ("alice", ("room:*",))


@pytest.mark.parametrize("algorithm,key_fixture", [("RS256", "rsa_key"), ("ES256", "ec_key")])
def test_public_key_algorithms_check_what_another_service_signs(algorithm, key_fixture,
                                                                  request, tmp_path):
    key = request.getfixturevalue(key_fixture)
    path = tmp_path / "public.pem"
    path.write_text(pem(key, private=False))
    tokens = Tokens(algorithm=algorithm, public_key=f"@{path}")
    assert not tokens.can_mint  # only the other service holds the private key
    with pytest.raises(ValueError, match="no private key"):
        tokens.mint("alice")
    token = jwt.encode(claims(), pem(key, private=True), algorithm=algorithm)
    assert tokens.verify(token).user == "alice"
    minting = Tokens(algorithm=algorithm, public_key=pem(key, private=False),
                     private_key=pem(key, private=True))
    assert tokens.verify(minting.mint("bob")[0]).user == "bob"


def test_wrong_signature_is_refused():
    token = jwt.encode(claims(), b"t" * 32, algorithm="HS256")
    with pytest.raises(TokenError, match="bad signature"):
        Tokens(secret=SECRET).verify(token)


def test_a_tampered_payload_is_refused():
    head, body, sig = Tokens(secret=SECRET).mint("mallory")[0].split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["sub"] = "alice"
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="bad signature"):
        Tokens(secret=SECRET).verify(f"{head}.{body}.{sig}")


def test_alg_none_is_refused():
    token = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(TokenError, match="algorithm not allowed"):
        Tokens(secret=SECRET).verify(token)


def test_hs256_forged_with_the_rs256_public_key_is_refused(rsa_key):
    public = pem(rsa_key, private=False)
    # The classic confusion: the public key (known to all) used as an HMAC secret.
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    import hashlib
    import hmac

    sig = base64.urlsafe_b64encode(hmac.new(public.encode(), head + b"." + body,
                                            hashlib.sha256).digest()).rstrip(b"=")
    forged = b".".join((head, body, sig)).decode()
    with pytest.raises(TokenError, match="algorithm not allowed"):
        Tokens(algorithm="RS256", public_key=public).verify(forged)


def test_expired_is_refused():
    token = jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="expired"):
        Tokens(secret=SECRET).verify(token)


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_missing_claims_are_refused(missing):
    payload = claims()
    del payload[missing]
    with pytest.raises(TokenError, match=f"no '{missing}' claim"):
        Tokens(secret=SECRET).verify(jwt.encode(payload, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("sub", ["", "a b", "x" * 65, "alice\n", 5])
def test_a_sub_that_is_not_a_user_id_is_refused(sub):
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        Tokens(secret=SECRET).verify(token)


def test_issuer_and_audience_are_checked_when_configured():
    tokens = Tokens(secret=SECRET, issuer="https://login.example", audience="wsapp")
    good = jwt.encode(claims(iss="https://login.example", aud="wsapp"), SECRET, "HS256")
    assert tokens.verify(good).user == "alice"
    for bad in (claims(iss="https://evil.example", aud="wsapp"), claims(aud="wsapp"),
                claims(iss="https://login.example", aud="other")):
        with pytest.raises(TokenError):
            tokens.verify(jwt.encode(bad, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("token", ["", "x", "a.b", "a.b.c", "é.é.é", "\ud800"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(TokenError):
        Tokens(secret=SECRET).verify(token)


def test_a_short_secret_is_refused_at_once():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Tokens(secret=b"short")


@pytest.mark.parametrize("user", ["", "a b", "x" * 65, None, 5, "<script>", "alice\n"])
def test_bad_user_ids(user):
    assert not valid_user(user)
    with pytest.raises(ValueError):
        Tokens(secret=SECRET).mint(user)


def test_secret_is_generated_once_and_kept_private(tmp_path):
    first = load_secret("", str(tmp_path / "d"))
    assert len(first) == 64 and load_secret("", str(tmp_path / "d")) == first
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "secret").st_mode) == 0o600
    assert load_secret("configured", str(tmp_path / "d")) == b"configured"


def test_api_key():
    assert api_key_ok("", None)
    assert api_key_ok("k1", "Bearer k1") and api_key_ok("k1", "bearer k1")
    assert not api_key_ok("k1", None) and not api_key_ok("k1", "Bearer k2")
    assert not api_key_ok("k1", "k1")
    assert not api_key_ok("k1", "Bearer kä") and api_key_ok("kä", "Bearer kä")  # no crash
