"""JWT tokens: who is calling, in which role, for which room. The edge verifies a token and
hands the domain the `Actor` it names; what an actor may do is the domain's rule
(rooms/actors.py)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from gateway.errors import unauthorized
from rooms.actors import Actor, Role
from rooms.text import storable

ALGORITHM = "HS256"
MAX_TTL_S = 30 * 24 * 3600
VERIFIED_CACHE_SIZE = 16_384  # tokens whose claims are remembered (a burst's buyers)


class TokenError(ValueError):
    """The token is missing, malformed, expired or signed with another secret."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Claims:
    sub: str
    role: Role
    room: str
    exp: int
    name: str = ""

    @property
    def actor(self) -> Actor:
        return Actor(self.sub, self.role, self.room, self.name)


def mint(secret: str, *, sub: str, role: Role, room: str, ttl_s: int = 3600, name: str = "") -> str:
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be between 1 and {MAX_TTL_S} seconds")
    if not sub or not room:
        raise ValueError("sub and room must not be empty")
    payload: dict[str, object] = {
        "sub": sub,
        "role": role.value,
        "room": room,
        "exp": int(time.time()) + ttl_s,
    }
    if name:
        payload["name"] = name
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Claims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "role", "room", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token_expired", "the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError("invalid_token", f"the token is invalid: {exc}") from None
    try:
        role = Role(payload["role"])
    except ValueError:
        raise TokenError("invalid_token", "the token has an unknown role") from None
    sub, room, name = payload["sub"], payload["room"], payload.get("name", "")
    if not all(isinstance(v, str) and storable(v) for v in (sub, room, name)) or not (sub and room):
        raise TokenError("invalid_token", "the token's sub, room and name must be text")
    return Claims(sub=sub, role=role, room=room, exp=int(payload["exp"]), name=name)


class Authenticator:
    """Verifies the tokens of requests and connections with the service's secret. The claims
    of the last `cache_size` good tokens are remembered, keyed by the token's exact string (a
    token changed in any way is verified anew), until their `exp`: a buyer's token is verified
    once, not on every click of a burst. Bad tokens are never remembered."""

    def __init__(
        self,
        secret: str,
        cache_size: int = VERIFIED_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, Claims] = OrderedDict()  # least recently used first

    @property
    def remembered(self) -> int:
        """How many tokens' claims are remembered now."""
        return len(self._verified)

    def claims(self, token: str | None) -> Claims | None:
        """None for no token; TokenError for a bad one."""
        if not token:
            return None
        known = self._verified.get(token)
        if known is not None:
            if known.exp <= self._clock():  # as PyJWT decides: expired from `exp` on
                del self._verified[token]
                raise TokenError("token_expired", "the token has expired")
            self._verified.move_to_end(token)
            return known
        claims = verify(self.secret, token)
        self._verified[token] = claims
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return claims

    def bearer_claims(self, authorization: str | None) -> Claims | None:
        """The claims of an `Authorization: Bearer <jwt>` header, None without one; 401 for a
        bad token."""
        try:
            return self.claims(bearer(authorization))
        except TokenError as exc:
            raise unauthorized(exc.code, exc.detail) from None

    def watcher(self, authorization: str | None) -> Actor | None:
        """Who watches: the actor of a valid token, None without one (anonymous); 401 for a bad
        token."""
        claims = self.bearer_claims(authorization)
        return claims.actor if claims else None

    def actor(self, authorization: str | None) -> Actor:
        """Who sends a request that needs a token; 401 without a valid one."""
        claims = self.bearer_claims(authorization)
        if claims is None:
            raise unauthorized("token_required", "send a token: Authorization: Bearer <jwt>")
        return claims.actor


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
