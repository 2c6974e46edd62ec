"""Typed results of every inventory operation: nothing here touches Redis."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HoldState(StrEnum):
    HELD = "held"
    OFFERED = "offered"  # a freed unit offered to a waiter: a hold of its own, confirmed as one
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class RejectReason(StrEnum):
    SOLD_OUT = "sold_out"
    LIMIT = "limit"
    CLOSED = "closed"
    INVALID = "invalid"
    UNKNOWN_POOL = "unknown_pool"
    STALE = "stale"  # the pool must be repaired from the system of record before it sells
    FENCED = "fenced"  # a repair of the pool is running: retry in a moment


class TransitionReason(StrEnum):
    EXPIRED = "expired"
    NOT_FOUND = "not_found"
    WRONG_STATE = "wrong_state"
    INVALID = "invalid"


class PoolReason(StrEnum):
    EXISTS = "exists"
    UNKNOWN_POOL = "unknown_pool"
    INVALID = "invalid"
    CREATED = "created"  # fence made the pool (it was missing)
    STALE = "stale"  # unfence after a restart of Redis since the fence: repair again


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A hold as stored: its state now, and when it expires (or expired) in server ms."""

    id: str
    pool: str
    buyer: str
    qty: int
    state: HoldState
    expires_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Answer to a successful reserve; `replay` is true when the idempotency key was known."""

    id: str
    pool: str
    buyer: str
    qty: int
    expires_at_ms: int
    remaining: int
    state: HoldState = HoldState.HELD
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason


ReserveResult = Hold | Rejection


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """One reservation of a batch for `InventoryLock.reserve_many`."""

    pool: str
    buyer: str
    qty: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Transition:
    """Outcome of a hold state change; `hold` is the record after it (None if not found)."""

    hold_id: str
    ok: bool
    reason: TransitionReason | None
    hold: HoldRecord | None

    @property
    def state(self) -> HoldState | None:
        return self.hold.state if self.hold else None


@dataclass(frozen=True, slots=True)
class PoolChange:
    """Outcome of load, rebuild, close and drop."""

    pool: str
    ok: bool
    reason: PoolReason | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    pool: str
    stock: int
    remaining: int
    held: int
    confirming: int
    confirmed: int
    buyers: int
    closed: bool
    limit_per_buyer: int
    hold_ms: int
    stale: bool = False  # loaded under another Redis run (or its repair died): repair it
    fenced: bool = False  # a repair is running
    stock_changes_pending: int = 0  # begun (adjust_stock) and not settled yet
    offered: int = 0  # units offered to waiters (stock = remaining + held + offered + ...)
    waiting: int = 0  # buyers on the waitlist


@dataclass(frozen=True, slots=True)
class Adopted:
    """What `adopt` changed: orders newly recorded as confirmed holds, their quantity, records
    found with another buyer or quantity (an id reissued before ids had nonces), and the stock
    left (below zero when Redis had promised more than there is)."""

    pool: str
    holds: int
    qty: int
    mismatches: int
    remaining: int


@dataclass(frozen=True, slots=True)
class OrderFact:
    """An order as the system of record has it, for `adopt`."""

    hold_id: str
    buyer: str
    qty: int


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    """What one `expire_due` call returned to stock."""

    pool: str
    holds: int
    qty: int
    remaining: int


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The invariant recomputed from hold records; `problems` is empty when `ok`."""

    pool: str
    ok: bool
    problems: tuple[str, ...]
    stock: int
    remaining: int
    held: int
    confirming: int
    confirmed: int
    stock_changes_pending: int = 0
    offered: int = 0
    waiting: int = 0


class StockReason(StrEnum):
    TOO_LOW = "too_low"  # it would take what is held, being confirmed or confirmed
    UNDONE = "undone"  # this request was rolled back
    MISMATCH = "mismatch"  # this request id was used with another delta
    CLOSED = "closed"
    UNKNOWN_POOL = "unknown_pool"
    STALE = "stale"
    FENCED = "fenced"
    INVALID = "invalid"
    NOT_FOUND = "not_found"  # settle: no such change
    WRONG_STATE = "wrong_state"  # settle: it was settled the other way


class StockState(StrEnum):
    PENDING = "pending"  # begun in Redis, not decided by the system of record yet
    DONE = "done"  # applied
    UNDONE = "undone"  # rolled back


@dataclass(frozen=True, slots=True)
class StockResult:
    """What adjust_stock or settle_stock did: the change's state and the pool's stock and
    remaining after it; or why not (`floor`: what a decrease may not go below)."""

    ok: bool
    state: StockState | None = None
    stock: int = 0
    remaining: int = 0
    reason: StockReason | None = None
    floor: int = 0


@dataclass(frozen=True, slots=True)
class StockChange:
    """A stock change as the pool records it, for the recovery sweep and a repair."""

    request_id: str
    delta: int
    state: StockState
    updated_at_ms: int


class WaitReason(StrEnum):
    ALREADY_WAITING = "already_waiting"
    NOT_SOLD_OUT = "not_sold_out"  # stock is left: reserve instead
    LIMIT = "limit"  # the buyer holds or bought the limit already
    FULL = "full"
    CLOSED = "closed"
    UNKNOWN_POOL = "unknown_pool"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Waiting:
    """A buyer's place on a waitlist (1: the next freed unit is theirs), or why they have none
    (`position` is still theirs when `already_waiting`)."""

    ok: bool
    position: int
    reason: WaitReason | None = None
