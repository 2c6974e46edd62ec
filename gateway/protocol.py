"""The WebSocket protocol, without I/O: parsing client messages and building server frames.

The whole protocol is written down in docs/protocol.md; this module is its executable form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from rooms.text import storable


class CloseCode(IntEnum):
    """Close codes the server sends; docs/protocol.md says what a client should do on each."""

    MESSAGE_TOO_BIG = 1009  # a message over the size limit (sent by the WebSocket layer)
    INTERNAL_ERROR = 1011  # this connection failed on the server (or missed its pong); resume
    SERVICE_RESTART = 1012  # this process is stopping: reconnect (to any process) and resume
    TRY_AGAIN_LATER = 1013  # Redis or PostgreSQL could not serve the room now; back off, resume
    ABUSE = 4400  # too many malformed or unknown messages
    UNAUTHORIZED = 4401  # the token is missing, malformed or expired (also mid-session, at exp)
    FORBIDDEN = 4403  # the Origin is not allowed, or the token is for another room
    ROOM_NOT_FOUND = 4404
    AUTH_TIMEOUT = 4408  # no auth message in time for a room that needs one
    SLOW_CONSUMER = 4429  # the client did not keep up; reconnect with resume


MAX_REF_LEN = 64
MAX_TEXT_LEN = 10_000
MAX_KEY_LEN = 128


class ProtocolError(ValueError):
    def __init__(self, code: str, detail: str, ref: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref


@dataclass(frozen=True)
class Command:
    """A valid client message: its type, the client's correlation ref and its fields."""

    type: str
    ref: str | None
    fields: dict[str, Any]


def _string(body: dict[str, Any], name: str, max_len: int, ref: str | None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError("invalid", f"{name} must be a string of 1-{max_len} characters", ref)
    if not storable(value):
        raise ProtocolError("invalid", f"{name} must be valid text without NUL characters", ref)
    return value


def _integer(
    body: dict[str, Any],
    name: str,
    low: int,
    high: int,
    ref: str | None,
    default: int | None = None,
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError("invalid", f"{name} must be an integer from {low} to {high}", ref)
    return value


def _auth(body: dict[str, Any], ref: str | None) -> dict[str, Any]:
    return {"token": _string(body, "token", 4096, ref)}


def _comment(body: dict[str, Any], ref: str | None) -> dict[str, Any]:
    return {"text": _string(body, "text", MAX_TEXT_LEN, ref)}


def _buy(body: dict[str, Any], ref: str | None) -> dict[str, Any]:
    return {
        "sale_id": _integer(body, "sale_id", 1, 2**62, ref),
        "qty": _integer(body, "qty", 1, 1000, ref, default=1),
        "idempotency_key": _string(body, "idempotency_key", MAX_KEY_LEN, ref),
    }


def _boolean(body: dict[str, Any], name: str, ref: str | None) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ProtocolError("invalid", f"{name} must be true or false", ref)
    return value


def _confirm(body: dict[str, Any], ref: str | None) -> dict[str, Any]:
    return {
        "reservation_id": _string(body, "reservation_id", MAX_KEY_LEN, ref),
        "payment_ref": _string(body, "payment_ref", 200, ref),
        "show_name": _boolean(body, "show_name", ref),
    }


def _cancel(body: dict[str, Any], ref: str | None) -> dict[str, Any]:
    return {"reservation_id": _string(body, "reservation_id", MAX_KEY_LEN, ref)}


def _ping(body: dict[str, Any], ref: str | None) -> dict[str, Any]:
    return {}


_SCHEMAS = {
    "auth": _auth,
    "comment": _comment,
    "buy": _buy,
    "confirm": _confirm,
    "cancel": _cancel,
    "ping": _ping,
}


def parse(text: str | bytes) -> Command:
    """A client message, validated against the schema of its type, or ProtocolError."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, nesting too deep
        raise ProtocolError("bad_json", "the message is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_message", "a message is a JSON object")
    ref = body.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF_LEN):
        raise ProtocolError("invalid", f"ref must be a string of at most {MAX_REF_LEN} characters")
    kind = body.get("type")
    schema = _SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}", ref)
    assert isinstance(kind, str)
    return Command(kind, ref, schema(body, ref))


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def snapshot_frame(snapshot: dict[str, Any]) -> str:
    return _dump({"type": "snapshot", "snapshot": snapshot})


def events_frame(events: list[bytes], skipped: int = 0) -> str:
    """One frame carrying already-encoded events: joined, never decoded and re-encoded."""
    joined = b",".join(events).decode()
    return f'{{"type":"events","skipped":{skipped},"events":[{joined}]}}'


def reply_frame(ref: str | None, data: dict[str, Any]) -> str:
    return _dump({"type": "reply", "ref": ref, "ok": True, "data": data})


def error_frame(ref: str | None, code: str, detail: str, **extra: Any) -> str:
    return _dump(
        {"type": "error", "ref": ref, "ok": False, "error": code, "detail": detail, **extra}
    )


def token_life(exp: int | None, now_s: float) -> dict[str, Any]:
    """What a client needs to refresh its token in time: the token's `exp` (seconds, as in the
    JWT) and the seconds it has left by this server's clock (the clock that enforces it), both
    null without a token."""
    if exp is None:
        return {"exp": None, "expires_in_s": None}
    return {"exp": exp, "expires_in_s": round(max(0.0, exp - now_s), 3)}


def welcome_frame(
    resumed: bool, epoch: str, seq: int, user: str | None, life: dict[str, Any]
) -> str:
    """`life` is `token_life(...)` of the connection's token."""
    return _dump(
        {"type": "welcome", "resumed": resumed, "epoch": epoch, "seq": seq, "user": user, **life}
    )
