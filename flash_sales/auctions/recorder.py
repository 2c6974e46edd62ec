"""`BidRecorder`: an accepted bid is written to PostgreSQL before it is acknowledged, with
group commit (as flash_sales/orders.py's OrderWriter writes orders).

Bids of one auction that are accepted while its previous batch is being written go together in
the next: one transaction per batch (BidLedger.record: the bids, the calls' answers, the
figures of the latest call), at most one in flight per auction, so a burst of bids costs a few
commits, not one each. Waiting bids are bounded per auction (RecorderFull), and each caller
waits at most `2 * timeout_s`. A failure answers every caller of the batch with the error: the
bids stay in Redis (the catch-up copy, keeper.flush, records them later) and the bidder's
retry with the same idempotency key gets the same answer, written again (idempotent)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from flash_sales.auctions.book import BidAnswer
from flash_sales.auctions.ledger import BidLedger

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_PENDING = 10_000


class RecorderFull(Exception):
    """Too many bids already wait for this auction in this process; retry later."""


@dataclass
class _Lane:
    waiting: deque[tuple[BidAnswer, asyncio.Future[None]]] = field(default_factory=deque)
    sender: asyncio.Task[None] | None = None


class BidRecorder:
    def __init__(
        self,
        ledger: BidLedger,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_pending: int = DEFAULT_MAX_PENDING,
        timeout_s: float = 5.0,
    ) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self._lanes: dict[int, _Lane] = {}
        self.batches = 0

    async def record(self, auction_id: int, answer: BidAnswer) -> None:
        """Returns once the accepted call is in PostgreSQL; raises (a storage error,
        BookReplaced, RecorderFull, TimeoutError) when it may not be."""
        lane = self._lanes.get(auction_id)
        if lane is None:
            lane = self._lanes[auction_id] = _Lane()
        if len(lane.waiting) >= self.max_pending:
            raise RecorderFull(f"too many bids waiting for auction {auction_id}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiting.append((answer, future))
        if lane.sender is None or lane.sender.done():
            lane.sender = asyncio.create_task(
                self._send_all(auction_id, lane), name=f"bids-{auction_id}"
            )
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout_s * 2)
        except BaseException:
            future.cancel()  # not sent yet: it never will be; in flight: its answer is dropped
            raise

    async def _send_all(self, auction_id: int, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch: list[tuple[BidAnswer, asyncio.Future[None]]] = []
                while lane.waiting and len(batch) < self.max_batch:
                    waiter = lane.waiting.popleft()
                    if not waiter[1].done():  # a caller who gave up is not written
                        batch.append(waiter)
                # One book per write: calls of a book that a rebuild replaced fail alone.
                for epoch in dict.fromkeys(a.live.epoch for a, _ in batch):
                    await self._commit(auction_id, [w for w in batch if w[0].live.epoch == epoch])
        finally:
            if self._lanes.get(auction_id) is lane and not lane.waiting:
                del self._lanes[auction_id]

    async def _commit(
        self, auction_id: int, batch: list[tuple[BidAnswer, asyncio.Future[None]]]
    ) -> None:
        answers = [answer for answer, _ in batch]
        latest = max(answers, key=lambda a: a.live.rev).live
        bids = {e.seq: e for a in answers for e in a.entries}
        calls = {a.field: (a.field, a.live.rev, a.raw) for a in answers}
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.ledger.record(
                    auction_id, latest, [bids[s] for s in sorted(bids)], list(calls.values())
                )
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        for _, future in batch:
            if not future.done():
                future.set_result(None)
