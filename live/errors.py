"""Every error leaves the service as JSON `{"error": code, "detail": text}`, never a bare 500."""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rooms.errors import RETRY_AFTER_S, STORAGE_ERRORS, ApiError

log = logging.getLogger("live")

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


def error_response(status: int, code: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return error_response(exc.status, exc.code, exc.detail, **headers)


async def unhandled_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, STORAGE_ERRORS):  # Redis or PostgreSQL away, slow or restarting
        log.warning("%s %s: storage unavailable: %r", request.method, request.url.path, exc)
        return error_response(
            503,
            "unavailable",
            "the service is unavailable for a moment; retry",
            **{"Retry-After": str(math.ceil(RETRY_AFTER_S))},
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an internal error occurred; it was logged")
