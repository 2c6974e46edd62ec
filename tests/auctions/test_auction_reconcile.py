"""`live reconcile --auction` (flash_sales/auctions/reconcile.py) on real Redis and PostgreSQL:
a settled auction is clean; a record that breaks an invariant (a price that is not the highest
bid, a bid after the deadline, an order of no offer) is reported."""

from __future__ import annotations

from auction_kit import HOST, Kit, kit, until, viewer

from flash_sales.auctions.reconcile import reconcile_auctions, render

__all__ = ["kit"]


async def _settled(kit: Kit) -> int:
    """An auction with a snipe extension, ended, its winner's offer confirmed into an order."""
    auction = await kit.open(snipe_window_s=120, max_extensions=2)
    await kit.bid(auction, "ann", 100)
    await kit.bid(auction, "bob", 110, max_cents=300)
    await kit.service.lifecycle.stop(auction, HOST)
    holds: list[str] = []

    async def offered() -> bool:
        await kit.service.settlement.sweep()
        offers = await kit.service.settlement.offers(auction, viewer("bob"))
        holds[:] = [o["reservation_id"] for o in offers if o["reservation_id"]]
        return bool(holds)

    await until(offered)
    await kit.service.confirm(holds[0], viewer("bob"), "pay-bob")
    return auction


async def _problems(kit: Kit, auction: int) -> tuple[str, ...]:
    [report] = await reconcile_auctions(kit.pg, kit.lock, [auction])
    return report.problems


async def test_a_settled_auction_is_clean_and_each_broken_record_is_named(kit: Kit) -> None:
    auction = await _settled(kit)
    [report] = await reconcile_auctions(kit.pg, kit.lock, [auction])
    assert report.ok and (report.bids, report.extensions, report.orders) == (2, 2, 1), report
    assert report.redis == "ok"
    assert "ok" in render([report])

    pg = kit.pg
    await pg.execute("UPDATE auctions SET price_cents = price_cents + 1 WHERE id = $1", auction)
    assert any("not the highest" in p for p in await _problems(kit, auction))
    await pg.execute("UPDATE auctions SET price_cents = price_cents - 1 WHERE id = $1", auction)

    await pg.execute(
        "UPDATE auction_bids SET accepted_at = accepted_at + interval '1 hour' "
        "WHERE auction_id = $1 AND seq = 1",
        auction,
    )
    found = await _problems(kit, auction)
    assert any("after the deadline" in p for p in found), found
    await pg.execute(
        "UPDATE auction_bids SET accepted_at = accepted_at - interval '1 hour' "
        "WHERE auction_id = $1 AND seq = 1",
        auction,
    )
    assert await _problems(kit, auction) == ()

    await pg.execute(
        "UPDATE auction_offers SET state = 'void', order_id = NULL WHERE auction_id = $1", auction
    )
    found = await _problems(kit, auction)
    assert any("0 offers decided as an order, 1 orders" in p for p in found), found

    [missing] = await reconcile_auctions(kit.pg, kit.lock, [auction + 1000])
    assert missing.problems == ("no such auction",)
