"""Tokens and the API key."""

import time

import pytest

from wsapp.realtime.auth import TokenSigner, api_key_ok, load_secret


def test_mint_and_verify():
    signer = TokenSigner(b"s" * 32)
    token, expires = signer.mint("alice")
    assert signer.verify(token) == "alice" and expires > time.time()


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "x" * 50 + "." + "y" * 43])
def test_malformed_tokens(bad):
    with pytest.raises(ValueError):
        TokenSigner(b"k").verify(bad)


def test_other_secret_and_tampering_are_refused():
    token, _ = TokenSigner(b"one").mint("alice")
    with pytest.raises(ValueError, match="signature"):
        TokenSigner(b"two").verify(token)
    body, sig = token.split(".")
    forged_body = TokenSigner(b"x").mint("mallory")[0].split(".")[0]
    with pytest.raises(ValueError):
        TokenSigner(b"one").verify(forged_body + "." + sig)


def test_expired():
    signer = TokenSigner(b"k")
    token, _ = signer.mint("alice", ttl=-1)
    with pytest.raises(ValueError, match="expired"):
        signer.verify(token)


@pytest.mark.parametrize("user", ["", "a b", "x" * 65, None, 5, "<script>"])
def test_bad_user_ids(user):
    with pytest.raises(ValueError):
        TokenSigner(b"k").mint(user)


def test_secret_is_generated_once_and_kept(tmp_path):
    first = load_secret("", str(tmp_path / "d"))
    assert len(first) == 64 and load_secret("", str(tmp_path / "d")) == first
    assert load_secret("configured", str(tmp_path / "d")) == b"configured"


def test_api_key():
    assert api_key_ok("", None)
    assert api_key_ok("k1", "Bearer k1") and api_key_ok("k1", "bearer k1")
    assert not api_key_ok("k1", None) and not api_key_ok("k1", "Bearer k2")
    assert not api_key_ok("k1", "k1")
