"""Auctions, their bids and their settlement in PostgreSQL, the system of record.

Every state change is a guarded UPDATE (`WHERE state = <from>`), so of several processes exactly
one moves an auction (or decides an offer) and learns it did. Bids and the live figures are
written by ledger.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from flash_sales import outbox
from flash_sales.auctions.book import Live
from flash_sales.auctions.model import Auction, AuctionConfig, AuctionState, OfferState
from flash_sales.model import Order
from flash_sales.referrals import referrer_sql
from flash_sales.store import ORDER_COLUMNS, order_of

_COLUMNS = (
    "id, room_id, product_id, start_cents, increments, duration_ms, snipe_window_ms, "
    "max_extensions, reserve_cents, state, price_cents, leader_id, leader_name, bid_count, "
    "extensions, ends_at"
)
_OFFER_COLUMNS = "auction_id, rank, bidder_id, price_cents, reservation_id, expires_at, state"
# The winner's referrer in the auction's room (share links, flash_sales/referrals.py).
_REFERRER = referrer_sql("(SELECT room_id FROM auctions WHERE id = $2)", "$3")


@dataclass(frozen=True)
class Offer:
    """A settlement offer: the winner's (rank 1) or the runner-up's second chance (rank 2)."""

    auction_id: int
    rank: int
    bidder: str
    price_cents: int
    reservation_id: str | None
    expires_at: datetime | None
    state: OfferState


def auction_of(row: asyncpg.Record) -> Auction:
    config = AuctionConfig(
        start_cents=row["start_cents"],
        bands=tuple((int(a), int(b)) for a, b in json.loads(row["increments"])),
        duration_ms=row["duration_ms"],
        snipe_window_ms=row["snipe_window_ms"],
        max_extensions=row["max_extensions"],
        reserve_cents=row["reserve_cents"],
    )
    return Auction(
        id=row["id"],
        room=row["room_id"],
        product_id=row["product_id"],
        config=config,
        state=AuctionState(row["state"]),
        price_cents=row["price_cents"],
        leader=row["leader_id"],
        leader_name=row["leader_name"],
        bids=row["bid_count"],
        extensions=row["extensions"],
        ends_at=row["ends_at"],
    )


def offer_of(row: asyncpg.Record, prefix: str = "") -> Offer:
    return Offer(
        row[prefix + "auction_id"],
        row[prefix + "rank"],
        row[prefix + "bidder_id"],
        row[prefix + "price_cents"],
        row[prefix + "reservation_id"],
        row[prefix + "expires_at"],
        OfferState(row[prefix + "state"]),
    )


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class AuctionStore:
    def __init__(self, pg: asyncpg.Pool) -> None:
        self.pg = pg

    async def create(self, room: str, product_id: int, config: AuctionConfig) -> Auction | None:
        """The new auction, or None when the product is not in the room."""
        row = await self.pg.fetchrow(
            f"""INSERT INTO auctions (room_id, product_id, start_cents, increments, duration_ms,
                                      snipe_window_ms, max_extensions, reserve_cents)
                SELECT $1, p.id, $3, $4::jsonb, $5, $6, $7, $8 FROM products p
                WHERE p.id = $2 AND p.room_id = $1
                RETURNING {_COLUMNS}""",
            room,
            product_id,
            config.start_cents,
            json.dumps([list(band) for band in config.bands]),
            config.duration_ms,
            config.snipe_window_ms,
            config.max_extensions,
            config.reserve_cents,
        )
        return None if row is None else auction_of(row)

    async def get(self, auction_id: int) -> Auction | None:
        row = await self.pg.fetchrow(f"SELECT {_COLUMNS} FROM auctions WHERE id = $1", auction_id)
        return None if row is None else auction_of(row)

    async def start(self, auction_id: int, epoch: str) -> Auction | None:
        """scheduled -> open, its Redis book to be named `epoch` (see ledger.py); None when it
        was not scheduled (another process started it)."""
        row = await self.pg.fetchrow(
            f"""UPDATE auctions SET state = 'open', started_at = now(), book_epoch = $2,
                       ends_at = now() + make_interval(secs => duration_ms / 1000.0)
                WHERE id = $1 AND state = 'scheduled' RETURNING {_COLUMNS}""",
            auction_id,
            epoch,
        )
        return None if row is None else auction_of(row)

    async def end(self, auction: Auction, live: Live | None, winner: bool) -> Auction | None:
        """scheduled or open -> ended with the final figures (`live`: as Redis ended it, None
        for an auction that never opened) and, when `winner`, the leader's offer at the price,
        in one transaction; None when another process ended it."""
        async with self.pg.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE auctions SET state = 'ended', ended_at = now(),
                           price_cents = coalesce($2, price_cents),
                           leader_id = coalesce($3, leader_id),
                           leader_name = coalesce($4, leader_name),
                           bid_count = greatest(bid_count, $5),
                           extensions = greatest(extensions, $6),
                           ends_at = coalesce($7, ends_at)
                    WHERE id = $1 AND state IN ('scheduled', 'open') RETURNING {_COLUMNS}""",
                auction.id,
                live.price_cents if live else None,
                live.leader if live else None,
                live.leader_name if live else None,
                live.bids if live else 0,
                live.extensions if live else 0,
                moment(live.ends_at_ms) if live and live.ends_at_ms else None,
            )
            if row is None:
                return None
            ended = auction_of(row)
            if winner and ended.leader and ended.price_cents:
                await conn.execute(
                    "INSERT INTO auction_offers (auction_id, rank, bidder_id, price_cents) "
                    "VALUES ($1, 1, $2, $3)",
                    ended.id,
                    ended.leader,
                    ended.price_cents,
                )
        return ended

    async def ending(self, slack_s: float, limit: int = 100) -> list[Auction]:
        """Open auctions whose deadline (as last copied) is within `slack_s` of now or past:
        Redis, whose deadline only moves later, decides whether each has ended."""
        rows = await self.pg.fetch(
            f"""SELECT {_COLUMNS} FROM auctions WHERE state = 'open'
                AND ends_at <= now() + make_interval(secs => $1) ORDER BY ends_at LIMIT $2""",
            slack_s,
            limit,
        )
        return [auction_of(r) for r in rows]

    async def unannounced(self, grace_s: float, limit: int = 100) -> list[Auction]:
        """Auctions ended more than `grace_s` ago whose end was not told the room (the process
        that ended them died, or the room's log was away)."""
        rows = await self.pg.fetch(
            f"""SELECT {_COLUMNS} FROM auctions WHERE state = 'ended' AND announced_at IS NULL
                AND ended_at < now() - make_interval(secs => $1) ORDER BY ended_at LIMIT $2""",
            grace_s,
            limit,
        )
        return [auction_of(r) for r in rows]

    async def announced(self, auction_id: int) -> None:
        await self.pg.execute(
            "UPDATE auctions SET announced_at = now() WHERE id = $1 AND announced_at IS NULL",
            auction_id,
        )

    async def open_auctions(self, limit: int = 1000) -> list[Auction]:
        rows = await self.pg.fetch(
            f"SELECT {_COLUMNS} FROM auctions WHERE state = 'open' ORDER BY id LIMIT $1", limit
        )
        return [auction_of(r) for r in rows]

    # -- settlement ----------------------------------------------------------------------------

    async def open_offers(self, limit: int = 1000) -> list[tuple[Offer, Auction]]:
        """Open offers with their auctions, in one query."""
        columns = ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))
        offer_columns = ", ".join(
            f"o.{c.strip()} AS o_{c.strip()}" for c in _OFFER_COLUMNS.split(",")
        )
        rows = await self.pg.fetch(
            f"""SELECT {columns}, {offer_columns}
                FROM auction_offers o JOIN auctions a ON a.id = o.auction_id
                WHERE o.state = 'offered' ORDER BY o.auction_id LIMIT $1""",
            limit,
        )
        return [(offer_of(r, "o_"), auction_of(r)) for r in rows]

    async def offers(self, auction_id: int) -> list[Offer]:
        rows = await self.pg.fetch(
            f"SELECT {_OFFER_COLUMNS} FROM auction_offers WHERE auction_id = $1 ORDER BY rank",
            auction_id,
        )
        return [offer_of(r) for r in rows]

    async def offer_by_hold(self, reservation_id: str) -> Offer | None:
        row = await self.pg.fetchrow(
            f"SELECT {_OFFER_COLUMNS} FROM auction_offers WHERE reservation_id = $1",
            reservation_id,
        )
        return None if row is None else offer_of(row)

    async def held(self, offer: Offer, reservation_id: str, expires_at_ms: int) -> None:
        """The offer's hold is made (the same id again after a replay of its reserve)."""
        await self.pg.execute(
            """UPDATE auction_offers SET reservation_id = $3, expires_at = $4
               WHERE auction_id = $1 AND rank = $2 AND state = 'offered'""",
            offer.auction_id,
            offer.rank,
            reservation_id,
            moment(expires_at_ms),
        )

    async def void(self, offer: Offer, reserve_cents: int | None) -> tuple[bool, Offer | None]:
        """Void an open offer (its hold ran out) and, for the winner's, offer the runner-up a
        second chance at their own highest bid, if it meets the reserve; in one transaction.
        Whether this call voided it, and the second chance it made (if any)."""
        async with self.pg.acquire() as conn, conn.transaction():
            voided = await conn.fetchval(
                """UPDATE auction_offers SET state = 'void', decided_at = now()
                   WHERE auction_id = $1 AND rank = $2 AND state = 'offered' RETURNING true""",
                offer.auction_id,
                offer.rank,
            )
            if not voided or offer.rank != 1:
                return bool(voided), None
            row = await conn.fetchrow(
                f"""INSERT INTO auction_offers (auction_id, rank, bidder_id, price_cents)
                    SELECT $1, 2, bidder_id, amount_cents FROM (
                        SELECT DISTINCT ON (bidder_id) bidder_id, amount_cents, seq
                        FROM auction_bids WHERE auction_id = $1 AND bidder_id <> $2
                        ORDER BY bidder_id, amount_cents DESC, seq) best
                    WHERE amount_cents >= coalesce($3, 0)
                    ORDER BY amount_cents DESC, seq LIMIT 1
                    RETURNING {_OFFER_COLUMNS}""",
                offer.auction_id,
                offer.bidder,
                reserve_cents,
            )
        return True, None if row is None else offer_of(row)

    async def place_order(self, offer: Offer, payment_ref: str) -> Order | OfferState:
        """The offer's order, made now (offered -> order, in one transaction with the order
        row); or the state it was decided in before (`order`: read it with `order`)."""
        async with self.pg.acquire() as conn, conn.transaction():
            state = await conn.fetchval(
                "SELECT state FROM auction_offers WHERE auction_id = $1 AND rank = $2 FOR UPDATE",
                offer.auction_id,
                offer.rank,
            )
            if state != OfferState.OFFERED.value:
                return OfferState(state)
            row = await conn.fetchrow(
                f"""INSERT INTO orders (reservation_id, auction_id, buyer_id, qty, price_cents,
                                        total_cents, payment_ref, referrer_id)
                    VALUES ($1, $2, $3, 1, $4::int, $4::bigint, $5, {_REFERRER})
                    RETURNING {ORDER_COLUMNS}""",
                offer.reservation_id,
                offer.auction_id,
                offer.bidder,
                offer.price_cents,
                payment_ref,
            )
            assert row is not None
            order = order_of(row)
            await outbox.add_auction_order(conn, offer.auction_id, order.id)
            await conn.execute(
                """UPDATE auction_offers SET state = 'order', order_id = $3, decided_at = now()
                   WHERE auction_id = $1 AND rank = $2""",
                offer.auction_id,
                offer.rank,
                order.id,
            )
        return order

    async def order(self, reservation_id: str) -> Order | None:
        row = await self.pg.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = $1 "
            "AND auction_id IS NOT NULL",
            reservation_id,
        )
        return None if row is None else order_of(row)

    async def auction_order(self, auction_id: int) -> Order | None:
        row = await self.pg.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE auction_id = $1", auction_id
        )
        return None if row is None else order_of(row)

    async def unsettled_orders(self, limit: int = 1000) -> list[Offer]:
        """Offers that became an order while their auction's settlement pool is still in
        Redis (their holds may still be confirming there)."""
        rows = await self.pg.fetch(
            f"""SELECT {", ".join(f"o.{c.strip()}" for c in _OFFER_COLUMNS.split(","))}
                FROM auction_offers o JOIN auctions a ON a.id = o.auction_id
                WHERE o.state = 'order' AND a.pool_dropped_at IS NULL
                ORDER BY o.auction_id LIMIT $1""",
            limit,
        )
        return [offer_of(r) for r in rows]

    async def settled(self, after_s: float, limit: int = 100) -> list[int]:
        """Ended auctions with no open offer, nothing decided or ended in the last `after_s`,
        whose settlement pool was not dropped yet."""
        rows = await self.pg.fetch(
            """SELECT a.id FROM auctions a WHERE a.state = 'ended' AND a.pool_dropped_at IS NULL
               AND a.ended_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM auction_offers o WHERE o.auction_id = a.id
                               AND (o.state = 'offered'
                                    OR o.decided_at > now() - make_interval(secs => $1)))
               ORDER BY a.id LIMIT $2""",
            after_s,
            limit,
        )
        return [r["id"] for r in rows]

    async def pool_dropped(self, auction_id: int) -> None:
        await self.pg.execute(
            "UPDATE auctions SET pool_dropped_at = now() WHERE id = $1", auction_id
        )
