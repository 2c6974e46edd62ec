"""The one error type domain code raises toward a client; the app renders it as
`{"error": code, "detail": text}` with its HTTP status (or as an error frame on the WebSocket)."""

from __future__ import annotations


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
