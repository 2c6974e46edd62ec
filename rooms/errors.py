"""Why the domain refuses a request, as values the edge renders (an HTTP status and
`{"error": code, "detail": text}`, or an error frame on the WebSocket).

The class says what kind of refusal it is and the `code` which one, from the documented codes
(README, docs/protocol.md); `retry_after_s` says when trying again may succeed.
"""

from __future__ import annotations

import asyncpg
from redis.exceptions import RedisError

# What a call to Redis or PostgreSQL raises when the server is away, slow or restarting: the
# caller answers "unavailable" with a time to retry after, never an internal error.
STORAGE_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # seen when a connection is cut in the middle of a statement
    OSError,
    TimeoutError,
)
RETRY_AFTER_S = 1.0


class Refusal(Exception):
    def __init__(self, code: str, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s


class Unauthenticated(Refusal):
    """The caller must sign in (send a token) for this."""


class Invalid(Refusal):
    """The request's input is malformed or out of range."""


class NotFound(Refusal):
    """No such room, product, sale, comment or reservation (or not the caller's)."""


class Forbidden(Refusal):
    """The caller may not do this (here, or for now: muted)."""


class Conflict(Refusal):
    """The state does not allow it now: sold out, expired, ended, already an order."""


class Throttled(Refusal):
    """Too many requests by this caller: wait `retry_after_s`."""


class Unavailable(Refusal):
    """A store is away for a moment: retry after `retry_after_s`."""


def invalid(detail: str) -> Invalid:
    return Invalid("invalid", detail)


def not_found(detail: str) -> NotFound:
    return NotFound("not_found", detail)


def forbidden(detail: str) -> Forbidden:
    return Forbidden("forbidden", detail)


def unavailable(detail: str) -> Unavailable:
    return Unavailable("unavailable", detail, retry_after_s=RETRY_AFTER_S)
