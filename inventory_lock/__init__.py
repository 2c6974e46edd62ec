"""The atomic Redis reservation engine: pools of stock, holds with expiry, per-buyer limits.

Knows nothing of rooms, HTTP or PostgreSQL. Every change to a pool is one Lua script (lua/),
replay-safe and timed by the Redis server's clock. Keys of pool P share one hash tag:
`<prefix>{sale:P}:meta|holds|buyers|due|confirming|idem|changes|waiters|offers`, so no command
or script spans two slots of a Redis Cluster; the engine keeps no list of pools (their owner
knows which to sweep). A hold id is `P.<n>-<nonce>` (`pool_of` reads P back), n from a per-pool
counter and the nonce random
per reserve call, so that ids are never reused whatever Redis forgets (a drop, a restart that
lost writes, a restored snapshot). A pool is marked with the Redis run id it was brought up to
date under; after a restart, a restore or a failover it refuses to sell (`stale`) until its
owner repaired it from the system of record: `fence`, `adopt` every order, `unfence`.
Invariant: stock = remaining + held + offered + confirming + confirmed, and per buyer held +
offered + confirming + confirmed <= limit; `InventoryLock.check` recomputes both.
A sold-out pool keeps a waitlist (`InventoryLock.waitlists`, inventory_lock/waitlist.py): a
unit freed by a hold that expires or is cancelled goes, in the same script, to the next waiter
as an `offered` hold of its own (keys `waiters` and `offers`).
A pool's stock changes by request id (`adjust_stock`, then `settle_stock` once the system of
record decided), replay-safe, never taking what is held, being confirmed or confirmed.
Reserves go in batches (one script call answers many requests of one pool, each as a single
reserve would); `ReserveBatcher` gathers the requests that arrive together into those batches.
"""

from inventory_lock.batcher import BatcherFull, ReserveBatcher
from inventory_lock.engine import InventoryLock
from inventory_lock.keys import pool_of
from inventory_lock.results import (
    Adopted,
    CheckReport,
    ExpiryResult,
    Hold,
    HoldRecord,
    HoldState,
    OrderFact,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
    ReserveResult,
    Snapshot,
    StockChange,
    StockReason,
    StockResult,
    StockState,
    Transition,
    TransitionReason,
    Waiting,
    WaitReason,
)
from inventory_lock.waitlist import PoolWaitlists

__all__ = [
    "Adopted",
    "BatcherFull",
    "CheckReport",
    "ExpiryResult",
    "Hold",
    "HoldRecord",
    "HoldState",
    "InventoryLock",
    "OrderFact",
    "PoolChange",
    "PoolReason",
    "PoolWaitlists",
    "RejectReason",
    "Rejection",
    "ReserveBatcher",
    "ReserveRequest",
    "ReserveResult",
    "Snapshot",
    "StockChange",
    "StockReason",
    "StockResult",
    "StockState",
    "Transition",
    "TransitionReason",
    "WaitReason",
    "Waiting",
    "pool_of",
]
