"""Key naming and input validation, shared rules with the Lua scripts (see lua/_prelude.lua).

All keys of one pool carry the hash tag `{sale:<pool>}` so a Redis Cluster keeps them in one
slot and a script may touch them all at once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from inventory_lock.results import ReserveRequest

MAX_TEXT_BYTES = 200
MAX_COUNT = 1_000_000_000
MAX_HOLD_MS = 86_400_000
MAX_BATCH = 10_000
MAX_RESERVE_BATCH = 500  # requests per reserve script call, as in lua/reserve.lua
_POOL_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# "<pool>.<seq>-<nonce>", or "<pool>.<seq>" as older releases made them (see lua/_prelude.lua).
_HOLD_RE = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,18})(?:-[0-9a-f]{16})?")

# Order matters: the scripts name them KEYS[1..9].
KEY_SUFFIXES = (
    "meta",
    "holds",
    "buyers",
    "due",
    "confirming",
    "idem",
    "changes",
    "waiters",
    "offers",
)


@dataclass(frozen=True, slots=True)
class PoolKeys:
    pool: str
    meta: str
    holds: str
    buyers: str
    due: str
    confirming: str
    idem: str
    changes: str  # stock changes by request id (lua/adjust_stock.lua)
    waiters: str  # the waitlist: buyer -> ticket (lua/wait.lua)
    offers: str  # ids of offered holds not told to their buyers yet (lua/take_offers.lua)

    @classmethod
    def of(cls, prefix: str, pool: str) -> PoolKeys:
        base = f"{prefix}{{sale:{pool}}}:"
        return cls(pool, *(base + suffix for suffix in KEY_SUFFIXES))

    @property
    def all(self) -> list[str]:
        return [
            self.meta,
            self.holds,
            self.buyers,
            self.due,
            self.confirming,
            self.idem,
            self.changes,
            self.waiters,
            self.offers,
        ]


def check_prefix(prefix: str) -> str:
    """A prefix with braces would change the hash tag and split a pool across slots."""
    if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix must be a string without braces: {prefix!r}")
    return prefix


def valid_pool(pool: object) -> bool:
    return isinstance(pool, str) and _POOL_RE.fullmatch(pool) is not None


def valid_text(value: object) -> bool:
    """Buyer ids and idempotency keys: a non-empty str of at most MAX_TEXT_BYTES in UTF-8."""
    if not isinstance(value, str) or not value:
        return False
    try:
        return len(value.encode()) <= MAX_TEXT_BYTES
    except UnicodeEncodeError:
        return False


def valid_count(value: object, minimum: int = 1, maximum: int = MAX_COUNT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def valid_request(request: ReserveRequest) -> bool:
    return (
        valid_pool(request.pool)
        and valid_text(request.buyer)
        and valid_text(request.idempotency_key)
        and valid_count(request.qty)
    )


def hold_ms_of(hold_seconds: object) -> int | None:
    """Hold time in whole ms (fractions of a second allowed), None when out of range."""
    if isinstance(hold_seconds, bool) or not isinstance(hold_seconds, int | float):
        return None
    if not math.isfinite(hold_seconds):
        return None
    ms = round(hold_seconds * 1000)
    return ms if 1 <= ms <= MAX_HOLD_MS else None


def pool_of(hold_id: str) -> str:
    """The pool a hold id belongs to; ValueError when it is not a hold id."""
    match = _HOLD_RE.fullmatch(hold_id) if isinstance(hold_id, str) else None
    if match is None:
        raise ValueError(f"not a hold id: {hold_id!r}")
    return match.group(1)
