"""`BookKeeper`: keeps each open auction's Redis book and PostgreSQL in step, in the background
of every process (each step idempotent, safe anywhere at once).

- `check_books`: every open auction's book is found and checked (PostgreSQL's side of all of
  them read in one query); a missing or stale one (Redis lost it or went back in time) is
  rebuilt from PostgreSQL (rebuild.py) before it takes bids, and so is an `ok` one that is not
  the book PostgreSQL names (a late rebuild's take-over) or is behind it (fewer bids or an
  older rev under the same Redis run id: a failover or resync that kept it). A book Redis
  ended while PostgreSQL still has the auction open (a stop whose write failed) is handed
  back to be finished (lifecycle.py).
- `flush`: the catch-up copy. A bid is recorded before it is acknowledged (recorder.py); when
  that write failed (the bidder got 503) the bid is still in Redis, and this copies it: bids
  PostgreSQL lacks, the accepted calls' answers, the figures. Only from a book that is `ok`:
  a stale book is rebuilt, not copied. Only the calls the peeked figures include (rev at most
  the peek's): a call accepted after the peek may have bids the copy does not have.
"""

from __future__ import annotations

import json
import logging

from flash_sales.auctions.announcements import AuctionAnnouncer
from flash_sales.auctions.book import AuctionBook, Live, LoggedBid
from flash_sales.auctions.ledger import BidLedger, BookDiverged, BookReplaced, Progress
from flash_sales.auctions.model import Auction
from flash_sales.auctions.rebuild import BookRebuild
from flash_sales.auctions.store import AuctionStore
from rooms.errors import STORAGE_ERRORS

log = logging.getLogger("live.auctions")

COPY_ERRORS: tuple[type[Exception], ...] = (*STORAGE_ERRORS, BookReplaced)


class BookKeeper:
    def __init__(
        self,
        store: AuctionStore,
        ledger: BidLedger,
        book: AuctionBook,
        rebuild: BookRebuild,
        announcer: AuctionAnnouncer,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.book = book
        self.rebuild = rebuild
        self.announcer = announcer
        self._dirty: set[int] = set()

    def mark_dirty(self, auction_id: int) -> None:
        """The next `flush_dirty` copies this auction's bids (their own write failed)."""
        self._dirty.add(auction_id)

    async def flush(self, auction_id: int, before: Progress | None = None) -> Live:
        """Copy what PostgreSQL lacks of an `ok` book (bids, calls, figures); the book as
        peeked (a stale or missing one is left to `check_books`). `before`: PostgreSQL's
        progress read before the peek (read here if not given). BookReplaced when a rebuild
        replaced the book meanwhile (what it had is not copied); BookDiverged when the book
        is behind PostgreSQL (nothing copied: it is to be rebuilt)."""
        if before is None:
            before = await self.ledger.progress(auction_id)
        live = await self.book.peek(auction_id)  # after: PostgreSQL may only be behind it
        if live.code == "unknown" or live.book != "ok":
            return live
        await self._check(auction_id, live, before)
        after = before.seq
        kept_calls = await self.book.count_calls(auction_id)
        if after >= live.bids and before.rev >= live.rev and before.calls >= kept_calls:
            return live  # each call was recorded with its figures: nothing to copy
        bids: list[LoggedBid] = []
        while after < live.bids and (page := await self.book.log(auction_id, after, live.bids)):
            bids += page
            after = page[-1].seq
        calls: list[tuple[str, int, str]] = []
        if kept_calls > before.calls or before.rev < live.rev:  # (a count may hide one)
            kept = (await self.book.calls(auction_id)).items()
            calls = [(f, rev, a) for f, a in kept if (rev := _rev(a)) <= live.rev]
        # Figures only with every bid they count (the log may have lost some since the peek:
        # Redis restarted; the book is then stale, and rebuilt).
        await self.ledger.record(auction_id, live, bids, calls, figures=after >= live.bids)
        return live

    async def _check(self, auction_id: int, live: Live, before: Progress) -> None:
        """Raise when the `ok` book is not the one PostgreSQL names, or is behind it."""
        if live.epoch == before.epoch and live.bids >= before.seq and live.rev >= before.rev:
            return
        now = await self.ledger.progress(auction_id)  # a rebuild may have run meanwhile
        if live.epoch != now.epoch:
            raise BookReplaced(f"auction {auction_id}: book {live.epoch!r} not named", live.epoch)
        if now.epoch == before.epoch and (live.bids < before.seq or live.rev < before.rev):
            raise BookDiverged(
                f"auction {auction_id}: book at seq {live.bids} rev {live.rev} is behind "
                f"PostgreSQL's seq {before.seq} rev {before.rev}",
                live.epoch,
            )

    async def flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for auction_id in dirty:
            try:
                await self.flush(auction_id)
            except COPY_ERRORS as exc:
                self._dirty.add(auction_id)
                log.warning("auction %s: bids not copied yet: %r", auction_id, exc)

    async def check_books(self) -> list[tuple[Auction, Live]]:
        """Every open auction: a missing, stale, replaced or behind book rebuilt, an `ok`
        one's bids copied. A book that never opened (its start died between PostgreSQL and
        Redis) is announced once rebuilt, as its start would have. The auctions whose `ok`
        book Redis has ended, with it (for lifecycle.py to finish)."""
        auctions = await self.store.open_auctions()
        progress = await self.ledger.progress_of([a.id for a in auctions])
        ended: list[tuple[Auction, Live]] = []
        for auction in auctions:
            try:
                live = await self.flush(auction.id, progress.get(auction.id))
                if live.code == "unknown" or live.book == "stale":
                    fresh = live.code == "unknown" and auction.bids == 0
                    if await self.rebuild.rebuild(auction) and fresh:
                        started = await self.book.peek(auction.id)
                        await self.announcer.lifecycle(auction, started, "auction_started")
                elif live.book == "ok" and live.state == "ended":
                    ended.append((auction, live))
            except BookReplaced as exc:
                log.warning("auction %s: book rebuilt: %s", auction.id, exc)
                await self._rebuild_replaced(auction, exc.epoch)
            except STORAGE_ERRORS as exc:
                log.warning("auction %s: book not checked: %r", auction.id, exc)
        return ended

    async def _rebuild_replaced(self, auction: Auction, epoch: str) -> None:
        try:
            await self.rebuild.rebuild(auction, replace=epoch)
        except STORAGE_ERRORS as exc:
            log.warning("auction %s: book not rebuilt: %r", auction.id, exc)


def _rev(answer: str) -> int:
    """The rev of a kept answer (the call's place among accepted calls)."""
    return int(json.loads(answer).get("rev") or 1)
