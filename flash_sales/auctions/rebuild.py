"""Rebuild of an open auction's Redis book from PostgreSQL, before it takes another bid.

Redis can lose a book (flushed, evicted) or take it back in time (a restart that lost the last
writes, a restored snapshot, a failover to a lagging replica). The book is then missing, or
`stale` (its Redis run id changed), and refuses bids and the close; or it is `ok` but not what
PostgreSQL has (another epoch, or behind it under the same run id: keeper.py), and is rebuilt
all the same (`replace`). A rebuild:
1. fences the book with a token of its own and a lease (a placeholder if it is missing): no bid
   is taken from here on, and only this rebuild may restore it;
2. names a new book in PostgreSQL (`BidLedger.take_over`, under the auction row's lock, only
   while its fence is still its own: a rebuild that stalled past its lease names nothing, so
   it never orphans the book a later rebuild restored): a write of the replaced book still in
   flight commits before it, or is refused; then reads the figures, the last seq and the
   answers of the accepted calls the figures include;
3. restores the book from them: price, leader, the leader's hidden maximum, deadline,
   extensions, seq (the next bid takes the seq after PostgreSQL's last: seqs are never given
   twice) and the idempotency record (a retried bid gets its first answer), then unfences it.
Every acknowledged bid is in PostgreSQL (recorder.py), so the rebuilt book has all of them; a
bid Redis accepted but never acknowledged (its write failed, 503) may be gone, as it should.

The deadline across an outage: it stands, by the Redis server's clock (the last deadline
PostgreSQL recorded, extensions included). The outage does not extend it; an auction whose
deadline passed while its book was away is rebuilt already due, takes no bid, and is ended by
the end loop with the bids PostgreSQL has.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from flash_sales.auctions.book import AuctionBook
from flash_sales.auctions.ledger import BidLedger, FenceLost, Taken
from flash_sales.auctions.model import Auction, encode_bands, ms
from flash_sales.auctions.store import AuctionStore

log = logging.getLogger("live.auctions")

FENCE_LEASE_MS = 10_000  # a rebuild not done by then is taken over (its process may be dead)
CALLS_PER_STEP = 500
ATTEMPTS = 3


class BookRebuild:
    def __init__(self, store: AuctionStore, ledger: BidLedger, book: AuctionBook) -> None:
        self.store = store
        self.ledger = ledger
        self.book = book
        self._running: dict[int, asyncio.Task[bool]] = {}
        self.rebuilt = 0

    def start(self, auction: Auction, replace: str = "") -> asyncio.Task[bool]:
        """The rebuild of this auction's book running in this process, started if none is
        (others may run one at once: the fence lets one restore). `replace`: the epoch of an
        `ok` book to rebuild all the same (see ledger.BookReplaced)."""
        task = self._running.get(auction.id)
        if task is None or task.done():
            work = self._rebuild(auction, replace)
            task = asyncio.create_task(work, name=f"rebuild-{auction.id}")
            self._running[auction.id] = task
            task.add_done_callback(lambda done: self._forget(auction.id, done))
        return task

    async def rebuild(self, auction: Auction, replace: str = "") -> bool:
        """Whether the book takes bids again (False: another process is at it, or it failed)."""
        return await asyncio.shield(self.start(auction, replace))

    def _forget(self, auction_id: int, task: asyncio.Task[bool]) -> None:
        if self._running.get(auction_id) is task:
            del self._running[auction_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning("auction %s: rebuild failed: %r", auction_id, task.exception())

    async def _rebuild(self, auction: Auction, replace: str) -> bool:
        for _ in range(ATTEMPTS):
            token = secrets.token_hex(8)
            fenced = await self.book.fence(auction.id, token, FENCE_LEASE_MS, replace)
            if fenced != "fenced":
                return fenced == "ok"  # up to date already; or another rebuild holds the fence

            async def still_fenced(token: str = token) -> bool:
                return await self.book.holds_fence(auction.id, token)

            try:
                taken = await self.ledger.take_over(auction.id, token, still_fenced)
            except FenceLost:
                log.warning("auction %s: rebuild outlived its fence; again", auction.id)
                continue
            if taken is None:  # ended meanwhile: PostgreSQL has all it needs
                await self.book.drop(auction.id)
                return True
            if await self._restore(auction, token, taken):
                self.rebuilt += 1
                log.warning(
                    "auction %s: book rebuilt from PostgreSQL (seq %d, rev %d, %d calls)",
                    auction.id,
                    taken.seq,
                    taken.rev,
                    len(taken.calls),
                )
                return True
        return False

    async def _restore(self, auction: Auction, token: str, taken: Taken) -> bool:
        config = auction.config
        state = {
            "state": "open",
            "start": str(config.start_cents),
            "bands": encode_bands(config.bands),
            "window": str(config.snipe_window_ms),
            "max_ext": str(config.max_extensions),
            "ext": str(taken.extensions),
            "started_at": str(ms(taken.started_at) or 0),
            "ends_at": str(ms(taken.ends_at) or 0),
            "ended_at": "0",
            "price": str(taken.price_cents or 0),
            "leader": taken.leader or "",
            "leader_name": taken.leader_name or "",
            "leader_max": str(taken.leader_max_cents),
            "reserve": str(config.reserve_cents or 0),
            "seq": str(taken.seq),
            "rev": str(taken.rev),
            "epoch": token,
            "log_base": str(taken.seq),
        }
        steps = [
            taken.calls[i : i + CALLS_PER_STEP]
            for i in range(0, max(len(taken.calls), 1), CALLS_PER_STEP)
        ]
        for index, calls in enumerate(steps):
            first, last = index == 0, index == len(steps) - 1
            done = await self.book.restore(
                auction.id, token, state if first else None, calls, finish=last
            )
            if done.code != "restored":
                return False  # Redis restarted meanwhile, or the lease ran out: again
        return True
