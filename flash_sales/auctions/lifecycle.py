"""An auction's life: created scheduled, opened (its state made in Redis, where its deadline is
kept by the server's clock), ended at that deadline by the background loop (or now by a stop),
then settled. Moves are guarded UPDATEs in PostgreSQL, so exactly one process makes each and
announces it. Every bid Redis accepted is in PostgreSQL before the end is recorded (keeper.py's
copy of what the bidders' own writes missed). A book that is stale or missing (Redis restarted,
rolled back, lost it) is rebuilt first (rebuild.py): until then a stop answers 503."""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import Any

from flash_sales.auctions.announcements import AuctionAnnouncer, auction_view
from flash_sales.auctions.book import AuctionBook, Live
from flash_sales.auctions.keeper import COPY_ERRORS, BookKeeper
from flash_sales.auctions.ledger import BidLedger, BookReplaced
from flash_sales.auctions.model import Auction, AuctionState, config_of, reserve_met, whole
from flash_sales.auctions.settlement import Settlement
from flash_sales.auctions.store import AuctionStore
from rooms.actors import Action, Actor, authorize
from rooms.errors import STORAGE_ERRORS, Conflict, invalid, not_found, unavailable

log = logging.getLogger("live.auctions")

ENDING_SLACK_S = 2.0  # clocks of PostgreSQL and Redis may differ this much
REBUILDING = "the auction is being restored; retry in a moment"
ANNOUNCE_GRACE_S = 5.0  # an end not announced by then is announced by the sweep


class AuctionLifecycle:
    def __init__(
        self,
        store: AuctionStore,
        ledger: BidLedger,
        book: AuctionBook,
        keeper: BookKeeper,
        announcer: AuctionAnnouncer,
        settlement: Settlement,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.book = book
        self.keeper = keeper
        self.announcer = announcer
        self.settlement = settlement
        self._fixed: dict[int, Auction] = {}

    async def create(
        self, room: str, actor: Actor, product_id: object, **config: object
    ) -> dict[str, Any]:
        """A scheduled auction of the product; `config`: the fields of `config_of`."""
        authorize(actor, room, Action.MANAGE_SALES)
        if not whole(product_id):
            raise invalid("product_id must be an integer")
        auction = await self.store.create(room, product_id, config_of(**config))
        if auction is None:
            raise not_found(f"no product {product_id} in room {room!r}")
        return auction_view(auction, None)

    async def auction(self, auction_id: int) -> Auction:
        """The auction as PostgreSQL has it now; 404 for an unknown id."""
        auction = await self.store.get(auction_id)
        if auction is None:
            raise not_found(f"no auction {auction_id}")
        self._fixed[auction.id] = auction
        return auction

    async def fixed(self, auction_id: int) -> Auction:
        """The auction with its fields that never change (room, product, configuration) right,
        from memory when it was read before; 404."""
        return self._fixed.get(auction_id) or await self.auction(auction_id)

    async def view(self, auction_id: int) -> dict[str, Any]:
        """Anyone's view: the live figures of an open auction, the recorded ones otherwise."""
        auction = await self.auction(auction_id)
        live = await self._live(auction)
        return auction_view(auction, live)

    async def _live(self, auction: Auction) -> Live | None:
        if auction.state is not AuctionState.OPEN:
            return None
        live = await self.book.peek(auction.id)
        return live if live.code != "unknown" and live.book == "ok" else None

    async def start(self, auction_id: int, actor: Actor) -> dict[str, Any]:
        auction = await self.auction(auction_id)
        authorize(actor, auction.room, Action.MANAGE_SALES)
        if auction.state is AuctionState.ENDED:
            raise Conflict("ended", "the auction has ended")
        epoch = secrets.token_hex(8)
        moved = await self.store.start(auction.id, epoch)
        if moved is not None:
            live = await self.book.open(moved.id, moved.config, epoch)
            await self.ledger.record(moved.id, live, [])  # the deadline by Redis's clock
            await self.announcer.lifecycle(moved, live, "auction_started")
        return await self.view(auction.id)

    async def stop(self, auction_id: int, actor: Actor) -> dict[str, Any]:
        """End now: a scheduled auction without a winner, an open one as at its deadline."""
        auction = await self.auction(auction_id)
        authorize(actor, auction.room, Action.MANAGE_SALES)
        if auction.state is not AuctionState.ENDED:
            live = await self.book.close(auction.id, now=True)
            if live.code in ("stale", "fenced"):
                self.keeper.rebuild.start(auction)
                raise unavailable(REBUILDING)
            try:
                await self.finish(auction, None if live.code == "unknown" else live)
            except BookReplaced:  # Redis restarted under the stop: the rebuilt book decides
                raise unavailable(REBUILDING) from None
        return await self.view(auction.id)

    async def end_due(self) -> None:
        """End the auctions whose deadline has passed by the Redis server's clock."""
        for auction in await self.store.ending(ENDING_SLACK_S):
            try:
                live = await self.book.close(auction.id)
                if live.code in ("stale", "fenced", "unknown"):
                    self.keeper.rebuild.start(auction)  # then ended by its deadline
                    continue
                if live.code == "not_due":
                    continue
                await self.finish(auction, live)
            except COPY_ERRORS as exc:
                log.warning("auction %s: not ended yet: %r", auction.id, exc)

    async def check_books(self) -> None:
        """The keeper's check of every open book (keeper.py), then the auctions whose book
        Redis ended while PostgreSQL has them open finished: a stop whose PostgreSQL write
        failed (503) is completed here, before the ended book's keys expire (else a rebuild
        would reopen it with its old deadline)."""
        for auction, live in await self.keeper.check_books():
            try:
                await self.finish(auction, live)
            except COPY_ERRORS as exc:
                log.warning("auction %s: not ended yet: %r", auction.id, exc)

    async def finish(self, auction: Auction, live: Live | None) -> None:
        """Record an auction Redis ended (`live`; None when Redis never had it): every bid, the
        end and the winner's offer, then tell the room and make the winner's hold. Again after
        a failure part way: each step is idempotent. BookReplaced (nothing recorded) when Redis
        lost the ended book meanwhile: its rebuild ends it again."""
        if live is not None:
            await self.keeper.flush(auction.id)
        price = live.price_cents if live else auction.price_cents
        leader = live.leader if live else auction.leader
        won = leader is not None and reserve_met(auction.config, price)
        ended = await self.store.end(auction, live, won)
        if ended is None:
            return
        self._fixed[ended.id] = ended
        await self.announcer.lifecycle(ended, live, "auction_ended")
        await self.store.announced(ended.id)
        offers = await self.store.offers(ended.id)
        if offers:
            await self.settlement.offer(ended, offers[0])

    async def announce_ended(self, grace_s: float = ANNOUNCE_GRACE_S) -> None:
        """`auction_ended` told for each auction whose finish died between its end in
        PostgreSQL and the announcement (the offer's hold is the settlement sweep's)."""
        for auction in await self.store.unannounced(grace_s):
            try:
                await self.announcer.lifecycle(auction, None, "auction_ended")
                await self.store.announced(auction.id)
            except STORAGE_ERRORS as exc:
                log.warning("auction %s: end not announced yet: %r", auction.id, exc)

    async def bids(self, auction_id: int, actor: Actor) -> dict[str, Any]:
        """Every accepted bid in the server's order, for the room's hosts and moderators."""
        auction = await self.fixed(auction_id)
        authorize(actor, auction.room, Action.READ_FIGURES)
        with contextlib.suppress(BookReplaced):  # the rebuilt book has what counts
            await self.keeper.flush(auction.id)
        return {
            "bids": [
                {
                    "seq": b.seq,
                    "bidder": b.bidder,
                    "amount_cents": b.amount_cents,
                    "accepted_at": b.ts_ms,
                    "proxy": b.proxy,
                }
                for b in await self.ledger.bids(auction.id)
            ]
        }
