"""Compare each auction's record in PostgreSQL with itself and with its settlement pool in
Redis, and say whether the invariants hold: the bids numbered 1..n without a gap and counted in
the auction's row, the price the highest accepted bid, the extensions within their cap, no bid
accepted at or after the deadline, at most one order, made from an offer at that offer's price
by its bidder; and, while the settlement pool exists, its invariant
recomputed from its hold records and at most one unit confirmed, as many as the orders.

`live reconcile --auction ID` prints it (live/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from flash_sales.auctions.model import OfferState, pool_name
from flash_sales.auctions.store import AuctionStore, Offer
from inventory_lock import InventoryLock


@dataclass(frozen=True)
class AuctionReport:
    auction_id: int
    state: str
    bids: int
    price_cents: int | None
    extensions: int
    orders: int
    redis: str  # "ok", "absent" or "broken"
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def all_auction_ids(pg: asyncpg.Pool) -> list[int]:
    return [r["id"] for r in await pg.fetch("SELECT id FROM auctions ORDER BY id")]


async def reconcile_auctions(
    pg: asyncpg.Pool, lock: InventoryLock, auction_ids: list[int]
) -> list[AuctionReport]:
    store = AuctionStore(pg)
    reports = []
    for auction_id in auction_ids:
        auction = await store.get(auction_id)
        if auction is None:
            reports.append(
                AuctionReport(auction_id, "unknown", 0, None, 0, 0, "absent", ("no such auction",))
            )
            continue
        problems = await _record_problems(pg, auction_id)
        orders = await pg.fetch(
            "SELECT id, buyer_id, price_cents, reservation_id FROM orders WHERE auction_id = $1",
            auction_id,
        )
        offers = await store.offers(auction_id)
        problems += _settlement_problems(orders, offers)
        check = await lock.check(pool_name(auction_id))
        redis = "absent"
        if check is not None and await lock.exists(pool_name(auction_id)):
            redis = "ok" if check.ok else "broken"
            problems += [f"redis: {p}" for p in check.problems]
            confirmed, confirming = check.confirmed, check.confirming
            if confirmed > 1 or not confirmed <= len(orders) <= confirmed + confirming:
                problems.append(
                    f"redis confirmed {check.confirmed} (+{check.confirming} confirming) "
                    f"!= postgres orders {len(orders)}"
                )
        reports.append(
            AuctionReport(
                auction.id,
                auction.state.value,
                auction.bids,
                auction.price_cents,
                auction.extensions,
                len(orders),
                redis,
                tuple(problems),
            )
        )
    return reports


async def _record_problems(pg: asyncpg.Pool, auction_id: int) -> list[str]:
    """The auction's row against its bids; no bid at or after the final deadline (the Redis
    server's: an extension's, or the moment a host stopped it). The deadline replayed bid by bid
    needs the first one, which only the start announced: `live loadtest auction` checks that."""
    row = await pg.fetchrow(
        """SELECT price_cents, bid_count, extensions, max_extensions, ends_at
           FROM auctions WHERE id = $1""",
        auction_id,
    )
    assert row is not None  # the caller read the auction
    bids = await pg.fetch(
        "SELECT seq, amount_cents, accepted_at FROM auction_bids WHERE auction_id = $1 "
        "ORDER BY seq",
        auction_id,
    )
    problems: list[str] = []
    if [b["seq"] for b in bids] != list(range(1, len(bids) + 1)):
        problems.append("bid seqs are not 1..n")
    if row["bid_count"] != len(bids):
        problems.append(f"bid_count {row['bid_count']} != {len(bids)} recorded bids")
    if bids and row["price_cents"] != max(b["amount_cents"] for b in bids):
        problems.append(f"price {row['price_cents']} is not the highest accepted bid")
    if row["extensions"] > row["max_extensions"]:
        problems.append(f"{row['extensions']} extensions > cap {row['max_extensions']}")
    if row["ends_at"] is None:
        return problems
    deadline = _ms(row["ends_at"])
    late = [b["seq"] for b in bids if _ms(b["accepted_at"]) >= deadline]
    if late:
        problems.append(f"bids {late[:5]} accepted at or after the deadline {deadline}")
    return problems


def _settlement_problems(orders: list[asyncpg.Record], offers: list[Offer]) -> list[str]:
    problems: list[str] = []
    if len(orders) > 1:
        problems.append(f"{len(orders)} orders")
    decided = [o for o in offers if o.state is OfferState.ORDER]
    if len(decided) != len(orders):
        problems.append(f"{len(decided)} offers decided as an order, {len(orders)} orders")
    for order in orders:
        offer = next((o for o in decided if o.reservation_id == order["reservation_id"]), None)
        if offer is None:
            problems.append(f"order {order['id']} is of no offer")
        elif (offer.bidder, offer.price_cents) != (order["buyer_id"], order["price_cents"]):
            problems.append(f"order {order['id']} is not its offer's bidder and price")
    return problems


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def render(reports: list[AuctionReport]) -> str:
    lines = [
        f"{'auction':>7} {'state':<9} {'bids':>5} {'price':>8} {'ext':>3} {'orders':>6}  verdict"
    ]
    for r in reports:
        verdict = "ok" if r.ok else "BROKEN: " + "; ".join(r.problems)
        price = "-" if r.price_cents is None else str(r.price_cents)
        lines.append(
            f"{r.auction_id:>7} {r.state:<9} {r.bids:>5} {price:>8} {r.extensions:>3} "
            f"{r.orders:>6}  {verdict}"
        )
    return "\n".join(lines)
