"""The verified-token cache of gateway/auth.py: it answers exactly as verifying would (a token
changed in any way, signed with another secret or expired is refused as verify refuses it), it
refuses a remembered token from its `exp` on, and it stays within its size."""

from __future__ import annotations

import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import ALGORITHM, Authenticator, Claims, TokenError, mint, verify
from rooms.actors import Role

SECRET = "cache-secret-0123456789abcdef0123456789abcdef"
TOKEN = mint(SECRET, sub="buyer-1", role=Role.VIEWER, room="show", ttl_s=3600, name="Ann")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="


def outcome(call: object) -> Claims | str:
    """The claims, or the TokenError's code."""
    assert callable(call)
    try:
        result: Claims = call()
        return result
    except TokenError as exc:
        return exc.code


@given(
    position=st.integers(min_value=0, max_value=len(TOKEN) - 1),
    char=st.sampled_from(ALPHABET),
    cut=st.booleans(),
)
def test_a_changed_token_is_answered_as_verify_answers_it(
    position: int, char: str, cut: bool
) -> None:
    auth = Authenticator(SECRET)
    assert auth.claims(TOKEN) == verify(SECRET, TOKEN)  # remembered now
    changed = TOKEN[:position] if cut else TOKEN[:position] + char + TOKEN[position + 1 :]
    expected = outcome(lambda: verify(SECRET, changed)) if changed else None
    got = outcome(lambda: auth.claims(changed))
    assert got == expected
    if changed != TOKEN and isinstance(expected, str):
        assert auth.remembered == 1  # a refused token is never remembered


@given(offset_s=st.integers(min_value=-100_000, max_value=-1), other=st.booleans())
def test_expired_or_foreign_tokens_are_never_admitted(offset_s: int, other: bool) -> None:
    payload = {"sub": "b", "role": "viewer", "room": "show", "exp": int(time.time()) + offset_s}
    token = jwt.encode(payload, SECRET, algorithm=ALGORITHM)
    if other:
        payload["exp"] = int(time.time()) + 3600
        token = jwt.encode(payload, SECRET + "x", algorithm=ALGORITHM)
    auth = Authenticator(SECRET)
    for _ in range(2):
        with pytest.raises(TokenError) as refused:
            auth.claims(token)
        assert refused.value.code == ("invalid_token" if other else "token_expired")
    assert auth.remembered == 0


@given(later_s=st.floats(min_value=0, max_value=7200, allow_nan=False))
def test_a_remembered_token_is_refused_from_its_exp_on(later_s: float) -> None:
    now = [time.time()]
    auth = Authenticator(SECRET, clock=lambda: now[0])
    claims = auth.claims(TOKEN)
    assert claims is not None
    now[0] += later_s
    if now[0] >= claims.exp:
        with pytest.raises(TokenError) as refused:
            auth.claims(TOKEN)
        assert refused.value.code == "token_expired"
        assert auth.remembered == 0
    else:
        assert auth.claims(TOKEN) == claims


@given(size=st.integers(min_value=0, max_value=20), tokens=st.integers(min_value=0, max_value=60))
def test_the_cache_stays_within_its_size(size: int, tokens: int) -> None:
    auth = Authenticator(SECRET, cache_size=size)
    minted = [mint(SECRET, sub=f"b{i}", role=Role.VIEWER, room="show") for i in range(tokens)]
    for token in minted:
        claims = auth.claims(token)
        assert claims is not None and claims.sub == verify(SECRET, token).sub
        assert auth.remembered <= size
    assert auth.remembered == min(size, tokens)
    if size and tokens:  # the most recently used are the ones kept: a hit needs no verify
        assert auth.claims(minted[-1]) == verify(SECRET, minted[-1])
