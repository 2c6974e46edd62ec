"""`ReserveBatcher`: reserves for one pool that arrive together go to Redis as one script call.

Group commit for the hot path. A request for a pool with no call in flight is sent at once (on
the next turn of the event loop, with whatever else arrived in the same turn); requests that
arrive while `max_in_flight` calls for the pool are out wait and go together in the next call,
up to `max_batch` of them. What waits is spread over the calls that may still go out, so that
Redis runs one batch while this process answers the last one and gathers the next (two calls
in flight per pool measured about 1.5x one in bench/reserve.py). Each answer is what
`InventoryLock.reserve` would have said.

- At most `max_pending` requests wait per pool: beyond that `reserve` raises `BatcherFull` at
  once, so an overloaded process sheds load (e.g. HTTP 503) instead of queueing without bound.
- A failed call fails every request of its batch with the call's exception.
- A cancelled caller does not cancel its batch. Cancelled before its batch left, it is not sent;
  cancelled after, its hold may be made, and a retry with the same idempotency key returns it.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field

from inventory_lock.engine import InventoryLock
from inventory_lock.keys import MAX_RESERVE_BATCH, valid_request
from inventory_lock.results import Rejection, RejectReason, ReserveRequest, ReserveResult

DEFAULT_MAX_PENDING = 10_000
DEFAULT_MAX_IN_FLIGHT = 2

Waiter = tuple[ReserveRequest, asyncio.Future[ReserveResult]]


class BatcherFull(Exception):
    """Too many reservations already wait for this pool in this process; retry later."""

    def __init__(self, pool: str) -> None:
        super().__init__(f"too many reservations waiting for pool {pool!r}")
        self.pool = pool


@dataclass(slots=True)
class _Lane:
    """One pool's waiting requests, its sender tasks, and how many of them have a call out."""

    waiting: deque[Waiter] = field(default_factory=deque)
    senders: set[asyncio.Task[None]] = field(default_factory=set)
    sending: int = 0

    def live_senders(self) -> int:
        """Senders not done: a sender cancelled before it ever ran no longer counts."""
        return sum(1 for sender in self.senders if not sender.done())

    def drop_cancelled(self) -> None:
        """Forget waiters whose callers gave up, so they do not count toward max_pending."""
        self.waiting = deque(w for w in self.waiting if not w[1].done())


class ReserveBatcher:
    """`reserve` like `InventoryLock.reserve`, batched per pool; `calls` and `requests` count
    the script calls made and the requests they carried (requests / calls = mean batch)."""

    def __init__(
        self,
        lock: InventoryLock,
        max_batch: int = MAX_RESERVE_BATCH,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if not 1 <= max_batch <= MAX_RESERVE_BATCH:
            raise ValueError(f"max_batch must be 1..{MAX_RESERVE_BATCH}")
        if max_pending < 1 or max_in_flight < 1:
            raise ValueError("max_pending and max_in_flight must be positive")
        self._lock = lock
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_in_flight = max_in_flight
        self._lanes: dict[str, _Lane] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.requests = 0

    async def reserve(self, pool: str, buyer: str, qty: int, idempotency_key: str) -> ReserveResult:
        """A hold of `qty`, or the same hold again for a known (buyer, idempotency key).
        Raises `BatcherFull` when `max_pending` requests already wait for the pool."""
        request = ReserveRequest(pool, buyer, qty, idempotency_key)
        if not valid_request(request):
            return Rejection(RejectReason.INVALID)
        lane = self._lanes.get(pool)
        if lane is None:
            lane = self._lanes[pool] = _Lane()
        if len(lane.waiting) >= self._max_pending:
            lane.drop_cancelled()
            if len(lane.waiting) >= self._max_pending:
                raise BatcherFull(pool)
        future: asyncio.Future[ReserveResult] = asyncio.get_running_loop().create_future()
        lane.waiting.append((request, future))
        if lane.live_senders() < self._max_in_flight:
            sender = asyncio.create_task(self._send_all(pool, lane), name=f"reserve-{pool}")
            for owner in (self._senders, lane.senders):
                owner.add(sender)
                sender.add_done_callback(owner.discard)
        return await future

    async def _send_all(self, pool: str, lane: _Lane) -> None:
        """Sends the lane's waiting requests, a batch per call, until none is left."""
        try:
            while lane.waiting:
                batch = self._take(lane)
                if batch:
                    lane.sending += 1
                    try:
                        await self._send(batch)
                    finally:
                        lane.sending -= 1
        finally:
            me = asyncio.current_task()
            if not any(s is not me and not s.done() for s in lane.senders):
                if self._lanes.get(pool) is lane:
                    del self._lanes[pool]
                for _, future in lane.waiting:  # only if this sender was cancelled
                    future.cancel()

    def _take(self, lane: _Lane) -> list[Waiter]:
        """This sender's share of what waits: an even part for each sender without a call out."""
        share = math.ceil(len(lane.waiting) / (lane.live_senders() - lane.sending))
        batch: list[Waiter] = []
        while lane.waiting and len(batch) < min(share, self._max_batch):
            waiter = lane.waiting.popleft()
            if not waiter[1].done():  # a caller cancelled while waiting is not sent
                batch.append(waiter)
        return batch

    async def _send(self, batch: list[Waiter]) -> None:
        self.calls += 1
        self.requests += len(batch)
        try:
            results = await self._lock.reserve_batch(batch[0][0].pool, [r for r, _ in batch])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
