"""Auctions, assembled: the lifecycle (create, start, stop, the end at the deadline), bidding
(each bid recorded in PostgreSQL before it is acknowledged), the keeper (books checked, rebuilt
from PostgreSQL when Redis lost them or went back in time, bids copied that their own write
missed), what rooms hear, and the settlement (the winner's hold and confirm, the runner-up's
second chance, settlement pools repaired after a Redis restart).

Two clocks never decide together: Redis's decides every bid and the deadline (one Lua call each,
lua/); PostgreSQL's guarded UPDATEs decide each move of an auction and each offer's outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from flash_sales.auctions.announcements import AuctionAnnouncer
from flash_sales.auctions.bidding import Bidding
from flash_sales.auctions.book import AuctionBook
from flash_sales.auctions.keeper import BookKeeper
from flash_sales.auctions.ledger import BidLedger
from flash_sales.auctions.lifecycle import AuctionLifecycle
from flash_sales.auctions.model import auction_id_of
from flash_sales.auctions.rebuild import BookRebuild
from flash_sales.auctions.recorder import BidRecorder
from flash_sales.auctions.settlement import Settlement
from flash_sales.auctions.store import AuctionStore
from flash_sales.store import SaleStore
from inventory_lock import InventoryLock, pool_of
from rooms.actors import Action, Actor, authorize
from rooms.errors import not_found
from rooms.log import RoomLog

DEFAULT_HOLD_S = 600.0  # the winner's time to pay


class AuctionService:
    def __init__(
        self,
        pg: asyncpg.Pool,
        lock: InventoryLock,
        room_log: RoomLog,
        *,
        hold_s: float = DEFAULT_HOLD_S,
        stuck_confirm_s: float,
        write_timeout_s: float = 5.0,
    ) -> None:
        """`lock`: the flash sales' InventoryLock (settlement pools are `auction-<id>`, which
        no sale's pool is); `stuck_confirm_s` as for SaleService; `write_timeout_s`: how long
        a batch of bids may take in PostgreSQL before its bidders get 503."""
        self.store = AuctionStore(pg)
        self.ledger = BidLedger(pg)
        self.book = AuctionBook(room_log.client, room_log.prefix)
        self.announcer = AuctionAnnouncer(room_log, SaleStore(pg))
        self.settlement = Settlement(
            self.store, lock, self.announcer, hold_s=hold_s, stuck_confirm_s=stuck_confirm_s
        )
        rebuild = BookRebuild(self.store, self.ledger, self.book)
        self.keeper = BookKeeper(self.store, self.ledger, self.book, rebuild, self.announcer)
        self.lifecycle = AuctionLifecycle(
            self.store, self.ledger, self.book, self.keeper, self.announcer, self.settlement
        )
        self.recorder = BidRecorder(self.ledger, timeout_s=write_timeout_s)
        self.bidding = Bidding(self.lifecycle, self.book, self.recorder, self.announcer)

    async def confirm(self, reservation_id: str, actor: Actor, payment_ref: str) -> dict[str, Any]:
        """Confirm a settlement hold (`settlement.is_auction_hold(reservation_id)`)."""
        auction = await self.lifecycle.fixed(self._auction_of(reservation_id))
        return await self.settlement.confirm(reservation_id, actor, payment_ref, auction)

    @staticmethod
    def _auction_of(reservation_id: str) -> int:
        """The auction of a settlement hold; 404 for any other id."""
        try:
            auction_id = auction_id_of(pool_of(reservation_id))
        except ValueError:
            auction_id = None
        if auction_id is None:
            raise not_found("no such reservation")
        return auction_id

    async def decline(self, reservation_id: str, actor: Actor) -> dict[str, Any]:
        """Let a settlement hold go (its bidder declines the offer): see Settlement.decline."""
        auction = await self.lifecycle.fixed(self._auction_of(reservation_id))
        return await self.settlement.decline(reservation_id, actor, auction)

    async def offers(self, auction_id: int, actor: Actor) -> list[dict[str, Any]]:
        """The caller's offers of the auction, for a signed-in person of its room (a token of
        another room, even the same user's, sees nothing of it); 404 for an unknown auction."""
        auction = await self.lifecycle.fixed(auction_id)
        authorize(actor, auction.room, Action.BUY)
        return await self.settlement.offers(auction.id, actor)

    async def drop_settled(self) -> None:
        """A settled auction's Redis keys go: its pool, and its book (which expires after the
        end anyway, but not one a rollback brought back after PostgreSQL ended it)."""
        for auction_id in await self.settlement.pools.drop_settled():
            await self.book.drop(auction_id)

    def loops(self) -> list[tuple[str, float | None, Callable[[], Awaitable[None]]]]:
        """(name, seconds between runs, work), as SaleService.loops."""
        loops: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (0.1, self.lifecycle.end_due),
            (0.5, self.keeper.flush_dirty),
            (0.5, self.lifecycle.check_books),
            (1.0, self.lifecycle.announce_ended),
            (0.25, self.settlement.sweep),
            (1.0, self.settlement.pools.recover_orders),
            (5.0, self.drop_settled),
        ]
        return [(f"auctions.{work.__name__}", interval, work) for interval, work in loops]
