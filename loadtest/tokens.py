"""Tokens for the simulated users, signed with the service's secret."""

from __future__ import annotations

import os

from rooms.auth import Role, mint

TTL_S = 6 * 3600


def resolve_secret(explicit: str = "") -> str:
    """The secret given, else LIVE_JWT_SECRET, else the development secret kept in
    LIVE_DATA_DIR (what `live serve` uses in development)."""
    if explicit:
        return explicit
    if os.environ.get("LIVE_JWT_SECRET"):
        return os.environ["LIVE_JWT_SECRET"]
    from live.settings import Settings

    return Settings.from_env().resolved_jwt_secret()


def host_token(secret: str, room: str, sub: str = "loadtest-host") -> str:
    return mint(secret, sub=sub, role=Role.HOST, room=room, ttl_s=TTL_S, name="Load test host")


def viewer_token(secret: str, room: str, sub: str) -> str:
    return mint(secret, sub=sub, role=Role.VIEWER, room=room, ttl_s=TTL_S, name=sub)
