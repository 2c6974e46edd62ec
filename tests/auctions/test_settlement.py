"""Settlement on real Redis and PostgreSQL: the winner's hold confirms into one order; a hold
that runs out gives the runner-up a second chance at their own highest bid; below the reserve
nobody wins; the order's `auction.won` goes to the outbox. Offers' holds last half a second
here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from auction_kit import HOST, ROOM, Kit, kit, short_hold_kit, until, viewer

from flash_sales.auctions.model import pool_name
from flash_sales.auctions.settlement import is_auction_hold
from flash_sales.webhooks.deliveries import DeliveryStore
from flash_sales.webhooks.endpoints import GLOBAL, Endpoint
from rooms.actors import Actor, Role
from rooms.errors import Conflict, NotFound

__all__ = ["kit", "short_hold_kit"]


async def _offer(kit: Kit, auction: int, user: str) -> str:
    """Until the user's open offer has its hold; its reservation id."""
    found: list[str] = []

    async def held() -> bool:
        await kit.service.settlement.sweep()
        offers = await kit.service.settlement.offers(auction, viewer(user))
        found[:] = [o["reservation_id"] for o in offers if o["state"] == "offered"]
        return bool(found) and found[0] is not None

    await until(held)
    return found[0]


async def _long_holds(kit: Kit, auction: int) -> None:
    """The auction's next holds last ten minutes (the pool's hold time, as if loaded so)."""
    await kit.redis.hset(kit.lock.keys(pool_name(auction)).meta, "hold_ms", 600_000)


async def _orders(kit: Kit, auction: int) -> int:
    return int(await kit.pg.fetchval("SELECT count(*) FROM orders WHERE auction_id = $1", auction))


async def test_the_winner_confirms_into_one_order(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100, max_cents=300)
    await kit.bid(auction, "bob", 200, max_cents=900)
    await kit.service.lifecycle.stop(auction, HOST)
    hold = await _offer(kit, auction, "bob")
    assert is_auction_hold(hold) and not is_auction_hold("12.1-0123456789abcdef")
    with pytest.raises(NotFound):
        await kit.service.confirm(hold, viewer("ann"), "pay-ann")
    order = await kit.service.confirm(hold, viewer("bob"), "pay-bob")
    assert (order["buyer"], order["price_cents"], order["auction_id"]) == ("bob", 310, auction)
    assert order["sale_id"] is None and order["total_cents"] == 310
    again = await kit.service.confirm(hold, viewer("bob"), "pay-bob")
    assert again == order
    assert await _orders(kit, auction) == 1
    report = await kit.lock.check(pool_name(auction))
    assert report is not None and report.ok and report.confirmed == 1
    offers = await kit.service.store.offers(auction)
    assert [(o.rank, o.state.value) for o in offers] == [(1, "order")]
    await _won_once_to_the_merchant(kit, auction, order)


async def _won_once_to_the_merchant(kit: Kit, auction: int, order: dict[str, Any]) -> None:
    """The order's `auction.won` is in the outbox once, in the auction's own stream, and fans
    out to an endpoint with the order."""
    entries = await kit.pg.fetch(
        "SELECT sale_id, auction_id, stream, seq, type, order_ids FROM outbox "
        "WHERE auction_id = $1",
        auction,
    )
    assert [dict(e) for e in entries] == [
        {
            "sale_id": None,
            "auction_id": auction,
            "stream": -auction,
            "seq": 1,
            "type": "auction.won",
            "order_ids": [order["id"]],
        }
    ]
    hook = Endpoint(GLOBAL, "http://127.0.0.1:9/hook", ("s" * 32,))
    assert await DeliveryStore(kit.pg).fan_out([hook], 50, 500, 100) >= 1
    body = await kit.pg.fetchval(
        "SELECT body FROM deliveries WHERE sale_id = $1 AND type = 'auction.won'", -auction
    )
    event = json.loads(body)
    assert event["data"]["auction_id"] == auction and event["data"]["room"] == ROOM
    assert event["data"]["order"]["id"] == order["id"] and event["data"]["sequence"] == 1


async def test_a_lapsed_winner_gives_the_runner_up_a_second_chance(short_hold_kit: Kit) -> None:
    kit = short_hold_kit
    auction = await kit.open()
    await kit.bid(auction, "ann", 100, max_cents=300)
    await kit.bid(auction, "cy", 150)
    await kit.bid(auction, "bob", 200, max_cents=900)
    await kit.service.lifecycle.stop(auction, HOST)
    lapsed = await _offer(kit, auction, "bob")
    await _long_holds(kit, auction)
    second = await _offer(kit, auction, "ann")  # once bob's hold ran out
    with pytest.raises(Conflict) as late:
        await kit.service.confirm(lapsed, viewer("bob"), "pay-bob")
    assert late.value.code == "expired"
    order = await kit.service.confirm(second, viewer("ann"), "pay-ann")
    assert (order["buyer"], order["price_cents"]) == ("ann", 300)  # her own highest bid
    assert await _orders(kit, auction) == 1
    offers = await kit.service.store.offers(auction)
    assert [(o.rank, o.bidder, o.state.value) for o in offers] == [
        (1, "bob", "void"),
        (2, "ann", "order"),
    ]


async def test_a_lapsed_second_chance_leaves_the_item_unsold(short_hold_kit: Kit) -> None:
    kit = short_hold_kit
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.bid(auction, "bob", 200)
    await kit.service.lifecycle.stop(auction, HOST)
    await _offer(kit, auction, "bob")
    await _offer(kit, auction, "ann")

    async def all_void() -> bool:
        await kit.service.settlement.sweep()
        offers = await kit.service.store.offers(auction)
        return [o.state.value for o in offers] == ["void", "void"]

    await until(all_void)
    assert await _orders(kit, auction) == 0


async def test_below_the_reserve_nobody_wins(short_hold_kit: Kit) -> None:
    kit = short_hold_kit
    auction = await kit.open(reserve_cents=1000)
    await kit.bid(auction, "ann", 100)
    await kit.bid(auction, "bob", 500)
    await kit.service.lifecycle.stop(auction, HOST)
    view = await kit.service.lifecycle.view(auction)
    assert view["state"] == "ended" and not view["reserve_met"]
    ended = (await kit.events("auction_ended"))[0]["data"]
    assert ended["winner"] is None and ended["price_cents"] is None
    await kit.service.settlement.sweep()
    assert await kit.service.store.offers(auction) == []


async def test_a_runner_up_below_the_reserve_gets_no_second_chance(short_hold_kit: Kit) -> None:
    kit = short_hold_kit
    auction = await kit.open(reserve_cents=300)
    await kit.bid(auction, "ann", 100, max_cents=250)
    await kit.bid(auction, "bob", 260, max_cents=900)  # the reserve lifts the price to 300
    await kit.service.lifecycle.stop(auction, HOST)
    await _offer(kit, auction, "bob")

    async def voided() -> bool:
        await kit.service.settlement.sweep()
        offers = await kit.service.store.offers(auction)
        return [o.state.value for o in offers] == ["void"]

    await until(voided)
    assert await _orders(kit, auction) == 0


async def test_the_loop_ends_the_auction_at_its_deadline(kit: Kit) -> None:
    auction = await kit.open(duration_s=1)
    await kit.bid(auction, "ann", 100)
    await kit.finish(auction)
    hold = await _offer(kit, auction, "ann")
    order = await kit.service.confirm(hold, viewer("ann"), "pay")
    assert order["price_cents"] == 100
    recorded = await kit.pg.fetchrow(
        "SELECT state, price_cents, leader_id, bid_count FROM auctions WHERE id = $1", auction
    )
    assert recorded is not None
    assert tuple(recorded) == ("ended", 100, "ann", 1)


async def test_a_service_confirms_an_offer_for_its_bidder(kit: Kit) -> None:
    """A payment provider's callback (a `service` token of the room), as for a sale's hold."""
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.service.lifecycle.stop(auction, HOST)
    hold = await _offer(kit, auction, "ann")
    payments = Actor("payments", Role.SERVICE, ROOM, "Payments")
    order = await kit.service.confirm(hold, payments, "pay-ann")
    assert (order["buyer"], order["price_cents"]) == ("ann", 100)
    assert await kit.service.confirm(hold, viewer("ann"), "pay-ann") == order


async def test_the_winner_declines_and_the_runner_up_is_offered_at_once(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.bid(auction, "bob", 110)
    await kit.service.lifecycle.stop(auction, HOST)
    hold = await _offer(kit, auction, "bob")
    with pytest.raises(NotFound):
        await kit.service.decline(hold, viewer("ann"))
    assert await kit.service.decline(hold, viewer("bob")) == {"id": hold, "state": "released"}
    assert await kit.service.decline(hold, viewer("bob")) == {"id": hold, "state": "released"}
    offers = await kit.service.store.offers(auction)
    assert [(o.bidder, o.state.value) for o in offers] == [("bob", "void"), ("ann", "offered")]
    assert offers[1].reservation_id is not None  # made by the decline, not by a later sweep
    order = await kit.service.confirm(offers[1].reservation_id, viewer("ann"), "pay-ann")
    assert (order["buyer"], order["price_cents"]) == ("ann", 100)
    with pytest.raises(Conflict):
        await kit.service.confirm(hold, viewer("bob"), "pay-bob")
