"""Tokens for the simulated users: JWTs as the service's README documents them (HS256 over
`sub`, `role`, `room`, `exp` and an optional `name`), signed with the service's secret. The load
tester knows the secret of a service it starts itself; for a service given by --url it takes
--jwt-secret or LIVE_JWT_SECRET (what `live token` signs with)."""

from __future__ import annotations

import os
import time

import jwt

TTL_S = 6 * 3600


class SecretMissing(RuntimeError):
    pass


def resolve_secret(explicit: str = "") -> str:
    """The secret given, else LIVE_JWT_SECRET."""
    secret = explicit or os.environ.get("LIVE_JWT_SECRET", "")
    if not secret:
        raise SecretMissing(
            "the service's JWT secret is needed to sign the users' tokens: "
            "give --jwt-secret or set LIVE_JWT_SECRET"
        )
    return secret


def mint(secret: str, *, sub: str, role: str, room: str, name: str = "") -> str:
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "room": room,
        "exp": int(time.time()) + TTL_S,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


def host_token(secret: str, room: str, sub: str = "loadtest-host") -> str:
    return mint(secret, sub=sub, role="host", room=room, name="Load test host")


def viewer_token(secret: str, room: str, sub: str) -> str:
    return mint(secret, sub=sub, role="viewer", room=room, name=sub)
