"""Share codes: a room and the user who shares it, signed with the service's secret as tokens are
(gateway/auth.py: HS256), so nobody can make one up or credit someone else. A code is no token:
it carries no role and no `exp`, and `typ: share`, so neither passes for the other."""

from __future__ import annotations

import jwt

from gateway.auth import ALGORITHM
from rooms.errors import Invalid
from rooms.text import storable

KIND = "share"
MAX_CODE_CHARS = 1000
_REQUIRED = ["typ", "room", "by"]


def invalid_share(detail: str) -> Invalid:
    return Invalid("invalid_share", detail)


def mint_share(secret: str, room: str, sharer: str) -> str:
    """The share code of `room` by `sharer`."""
    return jwt.encode({"typ": KIND, "room": room, "by": sharer}, secret, algorithm=ALGORITHM)


def sharer_of(secret: str, room: str, code: str) -> str:
    """Who shared `room` with this code; `invalid_share` for anything but a code of this service
    for this room."""
    if not code or len(code) > MAX_CODE_CHARS or not storable(code):
        raise invalid_share(f"a share code is 1-{MAX_CODE_CHARS} characters of text")
    try:
        payload = jwt.decode(code, secret, algorithms=[ALGORITHM], options={"require": _REQUIRED})
    except (jwt.InvalidTokenError, ValueError):
        raise invalid_share("the share code is not valid") from None
    sharer = payload["by"]
    if payload["typ"] != KIND or not isinstance(sharer, str) or not sharer or not storable(sharer):
        raise invalid_share("the share code is not valid")
    if payload["room"] != room:
        raise invalid_share("the share code is for another room")
    return sharer
