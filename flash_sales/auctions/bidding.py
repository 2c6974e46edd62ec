"""Bids: checked here, decided by one Lua call in Redis (lua/bid.lua) with the server's clock,
written to PostgreSQL (recorder.py, group commit) and only then acknowledged, then told: the
`auction` state event, `auction_extended` when the bid moved the end, `outbid` to the bidder who
lost the lead. What is told after the bid is best effort: the bid stands.

503 `unavailable` (with Retry-After), never a 5xx else: when Redis or PostgreSQL is away, when
the write to PostgreSQL failed (the bid stays in Redis, for the catch-up copy; a retry with the
same idempotency key gets the same answer, written again), and while the book is stale or
missing (Redis restarted, rolled back, lost it) until rebuilt from PostgreSQL (rebuild.py)."""

from __future__ import annotations

import logging
from typing import Any

from flash_sales.auctions.announcements import AuctionAnnouncer
from flash_sales.auctions.book import AuctionBook, BidAnswer
from flash_sales.auctions.ledger import BookReplaced
from flash_sales.auctions.lifecycle import REBUILDING, AuctionLifecycle
from flash_sales.auctions.model import Auction, cents
from flash_sales.auctions.recorder import BidRecorder, RecorderFull
from rooms.actors import Action, Actor, authorize
from rooms.errors import (
    STORAGE_ERRORS,
    Conflict,
    Invalid,
    Refusal,
    invalid,
    unavailable,
)

log = logging.getLogger("live.auctions")

NOT_RECORDED: tuple[type[Exception], ...] = (*STORAGE_ERRORS, RecorderFull, BookReplaced)

UNRECORDED = "bids are not recorded for a moment; retry with the same Idempotency-Key"


class Bidding:
    def __init__(
        self,
        lifecycle: AuctionLifecycle,
        book: AuctionBook,
        recorder: BidRecorder,
        announcer: AuctionAnnouncer,
    ) -> None:
        self.lifecycle = lifecycle
        self.book = book
        self.recorder = recorder
        self.announcer = announcer

    async def bid(
        self,
        auction_id: int,
        actor: Actor,
        amount_cents: object,
        max_cents: object,
        idempotency_key: str,
        *,
        show_name: bool = False,
    ) -> dict[str, Any]:
        """`{accepted, price_cents, leading, ends_at, ...}`, or a refusal that changed nothing.
        The same (bidder, idempotency key) answers as its first accepted call did.
        `show_name`: the bidder allows their display name as the leader and the winner."""
        auction = await self.lifecycle.fixed(auction_id)
        authorize(actor, auction.room, Action.BID)
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 128:
            raise invalid("send an Idempotency-Key of 1-128 characters, unique per bid")
        amount = cents(amount_cents, "amount_cents")
        top = None if max_cents is None else cents(max_cents, "max_cents")
        if top is not None and top < amount:
            raise Invalid("invalid", "max_cents must be at least amount_cents")
        # As the script keeps it: at most 200 bytes (cut on a character boundary).
        name = actor.display_name.encode()[:200].decode(errors="ignore") if show_name else ""
        try:
            answer = await self.book.bid(auction.id, actor.user, name, amount, top, idempotency_key)
            if not answer.accepted:
                raise await self._refusal(auction, answer)
            await self.recorder.record(auction.id, answer)
        except NOT_RECORDED as exc:
            self.lifecycle.keeper.mark_dirty(auction.id)
            log.warning("auction %s: bid not acknowledged: %r", auction.id, exc)
            raise unavailable(UNRECORDED) from None
        if answer.entries and not answer.replay:  # (a leader's raised maximum shows nothing)
            await self._tell(auction, answer)
        live = answer.live
        return {
            "accepted": True,
            "auction_id": auction.id,
            "price_cents": live.price_cents,
            "leading": answer.leading,
            "ends_at": live.ends_at_ms,
            "extensions": live.extensions,
            "bids": live.bids,
            "min_next_cents": live.min_next_cents,
            "seqs": [entry.seq for entry in answer.entries],
        }

    async def _refusal(self, auction: Auction, answer: BidAnswer) -> Refusal:
        live, code = answer.live, answer.live.code
        if code == "too_low":
            return Conflict("too_low", f"bid at least {live.min_next_cents} cents")
        if code == "own_bid":
            return Conflict("own_bid", "you are leading: raise your max_cents to bid again")
        if code == "ended":
            return Conflict("ended", "the auction has ended")
        if code in ("stale", "fenced"):
            self.lifecycle.keeper.rebuild.start(auction)
            return unavailable(REBUILDING)
        if code == "not_open":
            current = await self.lifecycle.auction(auction.id)  # ended, and Redis let it go?
            if current.state.value == "ended":
                return Conflict("ended", "the auction has ended")
            if current.state.value == "open":  # Redis lost its book
                self.lifecycle.keeper.rebuild.start(current)
                return unavailable(REBUILDING)
            return Conflict("not_open", "the auction is not open")
        return invalid("invalid bid")

    async def _tell(self, auction: Auction, answer: BidAnswer) -> None:
        live = answer.live
        try:
            await self.announcer.moved(auction, live)
            if answer.extended:
                await self.announcer.extended(auction, live)
            if answer.outbid is not None:
                await self.announcer.outbid(auction, answer.outbid, live)
        except STORAGE_ERRORS as exc:  # the bid is made: the next one tells the room
            log.warning("auction %s: bid not announced: %r", auction.id, exc)
