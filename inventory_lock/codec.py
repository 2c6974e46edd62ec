"""Replies of the Lua scripts turned into typed results (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from inventory_lock.keys import pool_of
from inventory_lock.results import (
    Adopted,
    ExpiryResult,
    Hold,
    HoldRecord,
    HoldState,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveResult,
    Snapshot,
    StockChange,
    StockReason,
    StockResult,
    StockState,
    Transition,
    TransitionReason,
)


def text(value: bytes | str) -> str:
    """Works with clients made with or without decode_responses."""
    return value.decode() if isinstance(value, bytes) else value


def record(hold_id: str, raw: bytes | str) -> HoldRecord:
    """Parses "state|qty|expires_ms|updated_ms|buyer" (see lua/_prelude.lua)."""
    state, qty, expires, updated, buyer = text(raw).split("|", 4)
    return HoldRecord(
        id=hold_id,
        pool=pool_of(hold_id),
        buyer=buyer,
        qty=int(qty),
        state=HoldState(state),
        expires_at_ms=int(expires),
        updated_at_ms=int(updated),
    )


# Lookups by reply text, faster than calling the enums on the hot path (results are frozen).
_STATES = {state.value: state for state in HoldState}
_REJECTIONS = {reason.value: Rejection(reason) for reason in RejectReason}


def reserve_replies(pool: str, reply: list[Any], count: int) -> list[ReserveResult]:
    """The answers of one lua/reserve.lua call for `count` requests of `pool`, in order."""
    if reply and isinstance(reply[0], bytes | str):  # the whole call was refused
        return [_REJECTIONS[text(reply[1])]] * count
    if len(reply) != count:
        raise ValueError(f"reserve answered {len(reply)} of {count} requests")
    return [reserve_reply(pool, item) for item in reply]


def reserve_reply(pool: str, reply: list[Any]) -> ReserveResult:
    """{'hold', id, record, remaining, replay} or {'rejected', reason}; parsed here rather than
    through `record`, since a burst runs through this once per request."""
    if text(reply[0]) == "rejected":
        return _REJECTIONS[text(reply[1])]
    state, qty, expires, _, buyer = text(reply[2]).split("|", 4)
    return Hold(
        text(reply[1]),
        pool,
        buyer,
        int(qty),
        int(expires),
        int(reply[3]),
        _STATES[state],
        bool(reply[4]),
    )


def transition_reply(hold_id: str, reply: list[Any]) -> Transition:
    reason = text(reply[1])
    return Transition(
        hold_id=hold_id,
        ok=bool(reply[0]),
        reason=TransitionReason(reason) if reason else None,
        hold=record(hold_id, reply[2]) if reply[2] is not None else None,
    )


def pool_change_reply(pool: str, reply: list[Any]) -> PoolChange:
    reason = text(reply[1])
    return PoolChange(pool, bool(reply[0]), PoolReason(reason) if reason else None)


def snapshot_reply(pool: str, reply: list[Any] | None) -> Snapshot | None:
    if reply is None:
        return None
    stock, remaining, held, confirming, confirmed, closed, limit, hold_ms, buyers = (
        int(value) for value in reply[:9]
    )
    state = text(reply[9])
    pending, offered, waiting = (int(value) for value in reply[10:13])
    return Snapshot(
        pool=pool,
        stock=stock,
        remaining=remaining,
        held=held,
        confirming=confirming,
        confirmed=confirmed,
        buyers=buyers,
        closed=bool(closed),
        limit_per_buyer=limit,
        hold_ms=hold_ms,
        stale=state == "stale",
        fenced=state == "fenced",
        stock_changes_pending=pending,
        offered=offered,
        waiting=waiting,
    )


def adopted_reply(pool: str, reply: list[Any]) -> Adopted | PoolChange:
    """{holds, qty, mismatches, remaining}, or {'rejected', reason} as a failed PoolChange."""
    if isinstance(reply[0], bytes | str):
        return PoolChange(pool, False, PoolReason(text(reply[1])))
    holds, qty, mismatches, remaining = (int(value) for value in reply)
    return Adopted(pool, holds, qty, mismatches, remaining)


def expiry_reply(pool: str, reply: list[Any] | None) -> ExpiryResult | None:
    if reply is None:
        return None
    holds, qty, remaining = (int(value) for value in reply)
    return ExpiryResult(pool, holds, qty, remaining)


def pairs(flat: list[Any]) -> list[tuple[str, bytes | str]]:
    """[k1, v1, k2, v2, ...] as [(k1, v1), ...] with text keys."""
    return [(text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]


def stock_reply(reply: list[Any]) -> StockResult:
    """{1, state, stock, remaining} or {0, reason, floor}."""
    if int(reply[0]):
        stock, remaining = int(reply[2]), int(reply[3])
        return StockResult(True, StockState(text(reply[1])), stock, remaining)
    return StockResult(False, reason=StockReason(text(reply[1])), floor=int(reply[2]))


def stock_change(request_id: str, raw: bytes | str) -> StockChange:
    """Parses "state|delta|updated_ms" (see lua/adjust_stock.lua)."""
    state, delta, updated = text(raw).split("|", 2)
    return StockChange(request_id, int(delta), StockState(state), int(updated))
