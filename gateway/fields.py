"""The fields of a request, validated the same way whether they come in an HTTP body or a
WebSocket message: each getter returns the typed value or raises `FieldError` naming the field,
which the HTTP side answers 422 `invalid` and the WebSocket side an `invalid` error frame."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rooms.text import storable

MAX_ID = 2**62  # product and sale ids


class FieldError(ValueError):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail


def text(body: dict[str, Any], name: str, *, max_len: int, default: str | None = None) -> str:
    """A string of 1-`max_len` characters (or `default` when absent), storable as text."""
    value = body.get(name, default)
    if (
        not isinstance(value, str)
        or (default is None and not value.strip())
        or len(value) > max_len
    ):
        raise FieldError(name, f"{name} must be a string of 1-{max_len} characters")
    if not storable(value):
        raise FieldError(name, f"{name} must be valid text without NUL characters")
    return value


def integer(
    body: dict[str, Any], name: str, *, low: int, high: int, default: int | None = None
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(name, f"{name} must be an integer from {low} to {high}")
    return value


def boolean(body: dict[str, Any], name: str, *, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise FieldError(name, f"{name} must be true or false")
    return value


def mapping(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON object (an empty one when absent)."""
    value = body.get(name, {})
    if not isinstance(value, dict):
        raise FieldError(name, f"{name} must be a JSON object")
    return value


def moment(body: dict[str, Any], name: str) -> datetime | None:
    """An ISO 8601 time with its zone, or epoch milliseconds; None when absent."""
    value = body.get(name)
    if value is None:
        return None
    problem = f"{name} must be an ISO 8601 time with a zone, or epoch milliseconds"
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            found = datetime.fromtimestamp(value / 1000).astimezone()
        elif isinstance(value, str) and len(value) <= 40:
            found = datetime.fromisoformat(value)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise FieldError(name, problem) from None
    if found.tzinfo is None:
        raise FieldError(name, problem)
    try:  # in UTC, as it is stored: a time near year 1 or 9999 may fall outside the calendar
        return found.astimezone(UTC)
    except OverflowError:
        raise FieldError(name, problem) from None
