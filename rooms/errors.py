"""The one error type domain code raises toward a client; the app renders it as
`{"error": code, "detail": text}` with its HTTP status (or as an error frame on the WebSocket)."""

from __future__ import annotations

import asyncpg
from redis.exceptions import RedisError

# What a call to Redis or PostgreSQL raises when the server is away, slow or restarting: the
# caller answers 503 with a time to retry after, never 500.
STORAGE_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # seen when a connection is cut in the middle of a statement
    OSError,
    TimeoutError,
)
RETRY_AFTER_S = 1.0


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, retry_after_s: float | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "bad_request", detail)


def invalid(detail: str) -> ApiError:
    return ApiError(422, "invalid", detail)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", detail)


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


def unauthorized(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail)


def unavailable(detail: str) -> ApiError:
    return ApiError(503, "unavailable", detail, retry_after_s=RETRY_AFTER_S)
