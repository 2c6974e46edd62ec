"""Small helpers for JSON routes: a bounded body reader and typed field getters that raise
ApiError with a message naming the field."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from rooms.errors import ApiError, bad_request, invalid
from rooms.text import storable

MAX_BODY_BYTES = 16 * 1024


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise bad_request("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, *, max_len: int, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise invalid(f"{name} must be a non-empty string")
    if len(value) > max_len:
        raise invalid(f"{name} must be at most {max_len} characters")
    if not storable(value):
        raise invalid(f"{name} must be valid text without NUL characters")
    return value


def int_field(
    body: dict[str, Any], name: str, *, low: int, high: int, default: int | None = None
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be an integer")
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}")
    return value
