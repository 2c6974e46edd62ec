"""Reading a request's JSON body, bounded, and the path ids every route parses the same way."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gateway.errors import EdgeError, bad_request
from rooms.errors import NotFound

MAX_BODY_BYTES = 16 * 1024


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object: 413 past MAX_BODY_BYTES, 400 for anything but an object (an
    empty body is `{}` when not `required`)."""
    too_large = EdgeError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_large
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
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


def path_id(request: Request, name: str, what: str) -> int:
    """A numeric id from the path (ASCII digits, at most 18 of them); 404 otherwise."""
    raw: str = request.path_params[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound("not_found", f"no {what} {raw!r}")
    return int(raw)
