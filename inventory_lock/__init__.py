"""The atomic Redis reservation engine: pools of stock, holds with expiry, per-buyer limits.

Knows nothing of rooms, HTTP or PostgreSQL. Every change to a pool is one Lua script (lua/),
replay-safe and timed by the Redis server's clock. Keys of pool P share one hash tag:
`<prefix>{sale:P}:meta|holds|buyers|due|confirming|idem`; loaded pools are listed in
`<prefix>inventory:pools` for the sweepers. A hold id is `P.<n>` (`pool_of` reads P back), n
from a per-pool counter seeded with the server time in microseconds so that ids are never reused
after a drop or a rebuild. Invariant: stock = remaining + held + confirming + confirmed, and per
buyer held + confirming + confirmed <= limit; `InventoryLock.check` recomputes both.
Reserves go in batches (one script call answers many requests of one pool, each as a single
reserve would); `ReserveBatcher` gathers the requests that arrive together into those batches.
"""

from inventory_lock.batcher import BatcherFull, ReserveBatcher
from inventory_lock.engine import InventoryLock
from inventory_lock.keys import pool_of
from inventory_lock.results import (
    CheckReport,
    ExpiryResult,
    Hold,
    HoldRecord,
    HoldState,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
    ReserveResult,
    Snapshot,
    Transition,
    TransitionReason,
)

__all__ = [
    "BatcherFull",
    "CheckReport",
    "ExpiryResult",
    "Hold",
    "HoldRecord",
    "HoldState",
    "InventoryLock",
    "PoolChange",
    "PoolReason",
    "RejectReason",
    "Rejection",
    "ReserveBatcher",
    "ReserveRequest",
    "ReserveResult",
    "Snapshot",
    "Transition",
    "TransitionReason",
    "pool_of",
]
