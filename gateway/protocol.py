"""The WebSocket protocol, without I/O: parsing client messages and building server frames.

The whole protocol is written down in docs/protocol.md; this module is its executable form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from flash_sales.model import MAX_LIMIT
from gateway import fields
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
MAX_DEPTH = 32  # nesting of lists and objects in a client message
MAX_PAYMENT_REF_LEN = 200


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


def _auth(body: dict[str, Any]) -> dict[str, Any]:
    return {"token": fields.text(body, "token", max_len=4096)}


def _comment(body: dict[str, Any]) -> dict[str, Any]:
    return {"text": fields.text(body, "text", max_len=MAX_TEXT_LEN)}


def _buy(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "sale_id": fields.integer(body, "sale_id", low=1, high=fields.MAX_ID),
        "qty": fields.integer(body, "qty", low=1, high=MAX_LIMIT, default=1),
        "idempotency_key": fields.text(body, "idempotency_key", max_len=MAX_KEY_LEN),
    }


def _confirm(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "reservation_id": fields.text(body, "reservation_id", max_len=MAX_KEY_LEN),
        "payment_ref": fields.text(body, "payment_ref", max_len=MAX_PAYMENT_REF_LEN),
        "show_name": fields.boolean(body, "show_name"),
    }


def _bid(body: dict[str, Any]) -> dict[str, Any]:
    """The amounts are the domain's to check (`invalid` naming the field), as over HTTP."""
    return {
        "auction_id": fields.integer(body, "auction_id", low=1, high=fields.MAX_ID),
        "amount_cents": body.get("amount_cents"),
        "max_cents": body.get("max_cents"),
        "idempotency_key": fields.text(body, "idempotency_key", max_len=MAX_KEY_LEN),
        "show_name": fields.boolean(body, "show_name"),
    }


def _cancel(body: dict[str, Any]) -> dict[str, Any]:
    return {"reservation_id": fields.text(body, "reservation_id", max_len=MAX_KEY_LEN)}


def _group_start(body: dict[str, Any]) -> dict[str, Any]:
    """`idempotency_key` is optional: with one, a retried start answers the same group."""
    return {
        "sale_id": fields.integer(body, "sale_id", low=1, high=fields.MAX_ID),
        "idempotency_key": fields.text(body, "idempotency_key", max_len=MAX_KEY_LEN, default=""),
    }


def _group(body: dict[str, Any]) -> dict[str, Any]:
    return {"group_id": fields.integer(body, "group_id", low=1, high=fields.MAX_ID)}


def _ping(body: dict[str, Any]) -> dict[str, Any]:
    return {}


_SCHEMAS = {
    "auth": _auth,
    "comment": _comment,
    "buy": _buy,
    "confirm": _confirm,
    "cancel": _cancel,
    "bid": _bid,
    "group_start": _group_start,
    "group_join": _group,
    "group_leave": _group,
    "ping": _ping,
}


def _nested_deeper(value: object, limit: int) -> bool:
    """Whether a decoded JSON value nests lists or objects deeper than `limit`."""
    level: list[object] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def parse(text: str | bytes) -> Command:
    """A client message, validated against the schema of its type, or ProtocolError."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, nesting too deep
        raise ProtocolError("bad_json", "the message is not valid JSON") from None
    if _nested_deeper(body, MAX_DEPTH):  # as on every Python (3.13's parser has no limit)
        raise ProtocolError("bad_json", f"the message nests deeper than {MAX_DEPTH} levels")
    if not isinstance(body, dict):
        raise ProtocolError("bad_message", "a message is a JSON object")
    ref = body.get("ref")
    if ref is not None and (
        not isinstance(ref, str) or len(ref) > MAX_REF_LEN or not storable(ref)
    ):  # echoed in the answer: a lone surrogate ("\ud800") could not be sent back as UTF-8
        raise ProtocolError(
            "invalid", f"ref must be a string of at most {MAX_REF_LEN} characters of valid text"
        )
    kind = body.get("type")
    schema = _SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}", ref)
    assert isinstance(kind, str)
    try:
        return Command(kind, ref, schema(body))
    except fields.FieldError as exc:
        raise ProtocolError("invalid", exc.detail, ref) from None


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def snapshot_frame(snapshot: dict[str, Any]) -> str:
    return _dump({"type": "snapshot", "snapshot": snapshot})


def events_frame(epoch: str, events: list[bytes], skipped: int = 0) -> str:
    """One frame carrying events already in their wire form (gateway/envelope.py), of the log's
    `epoch`: joined, never decoded and re-encoded."""
    joined = b",".join(events).decode()
    head = f'{{"type":"events","epoch":{json.dumps(epoch)},"skipped":{skipped}'
    return f'{head},"events":[{joined}]}}'


def direct_frame(kind: str, data: Any) -> str:
    """A message for one user (`outbid`, `auction_offer`...): a frame of its own, so its kind,
    named by the domain, can never pass for one of the protocol's frame types."""
    return _dump({"type": "direct", "kind": kind, "data": data})


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
