"""Every error leaves the service as JSON `{"error": code, "detail": text}` with a status that
says its kind, never a bare 500: the domain's refusals by their class, the edge's own (a body it
cannot read, a token it cannot verify) as `EdgeError`, a store that is away as 503 with
`Retry-After`."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.fields import FieldError
from rooms.errors import (
    RETRY_AFTER_S,
    STORAGE_ERRORS,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refusal,
    Throttled,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("live.gateway")

STATUS: dict[type[Refusal], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Throttled: 429,
    Unavailable: 503,
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


class EdgeError(Exception):
    """A request the edge itself refuses before the domain sees it."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def bad_request(detail: str) -> EdgeError:
    return EdgeError(400, "bad_request", detail)


def unauthorized(code: str, detail: str) -> EdgeError:
    return EdgeError(401, code, detail)


def error_response(status: int, code: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    status = next(s for kind, s in STATUS.items() if isinstance(exc, kind))
    headers = {} if exc.retry_after_s is None else _retry_after(exc.retry_after_s)
    return error_response(status, exc.code, exc.detail, **headers)


async def edge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EdgeError)
    return error_response(exc.status, exc.code, exc.detail)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail))


async def storage_unavailable(request: Request, exc: Exception) -> Response:
    """Redis or PostgreSQL away, slow or restarting: 503, logged once without a traceback."""
    log.warning("%s %s: storage unavailable: %r", request.method, request.url.path, exc)
    detail = "the service is unavailable for a moment; retry"
    return error_response(503, "unavailable", detail, **_retry_after(RETRY_AFTER_S))


async def unhandled_exception(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an internal error occurred; it was logged")


async def field_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FieldError)
    return error_response(422, "invalid", exc.detail)


HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: http_exception,
    Refusal: refusal,
    EdgeError: edge_error,
    FieldError: field_error,
    # Handled by class (not by the catch-all below, which Starlette re-raises after answering).
    **dict.fromkeys(STORAGE_ERRORS, storage_unavailable),
    Exception: unhandled_exception,
}
