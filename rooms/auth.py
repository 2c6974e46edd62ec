"""JWT tokens: who is calling, in which role, for which room."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from rooms.errors import forbidden, unauthorized

ALGORITHM = "HS256"
MAX_TTL_S = 30 * 24 * 3600


class Role(StrEnum):
    HOST = "host"
    MODERATOR = "moderator"
    VIEWER = "viewer"


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
    def staff(self) -> bool:
        """Host or moderator: may run the room."""
        return self.role in (Role.HOST, Role.MODERATOR)


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
    if not all(isinstance(v, str) for v in (sub, room, name)) or not sub or not room:
        raise TokenError("invalid_token", "the token's sub, room and name must be strings")
    return Claims(sub=sub, role=role, room=room, exp=int(payload["exp"]), name=name)


class Authenticator:
    """Reads the bearer token of a request and checks it against the room it acts on."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def claims(self, token: str | None) -> Claims | None:
        """None for no token; TokenError for a bad one."""
        return verify(self.secret, token) if token else None

    def for_room(self, token: str | None, room: str, *, staff: bool = False) -> Claims:
        if not token:
            raise unauthorized("token_required", "send a token: Authorization: Bearer <jwt>")
        try:
            claims = verify(self.secret, token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.detail) from None
        if claims.room != room:
            raise forbidden("this token is for another room")
        if staff and not claims.staff:
            raise forbidden("only the host or a moderator of this room may do this")
        return claims


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
