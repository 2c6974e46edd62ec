"""Group deals end to end on the real Redis and PostgreSQL: a group forms when its last place
fills (every member an order at the group price, in one transaction), members leave, a window
that closes short releases every hold and leaves no order, a stop fails the forming groups,
and the room hears of each."""

from __future__ import annotations

import pytest
from group_kit import HOST, ROOM, Kit, kit, viewer

from flash_sales.group_deals.keys import GroupKeys
from rooms.errors import Conflict, NotFound

__all__ = ["kit"]


async def test_a_group_forms_when_the_last_place_fills(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    view = await kit.join(group, "bob")
    assert (view["state"], view["members"], view["places_left"], view["joined"]) == (
        "forming",
        2,
        1,
        True,
    )
    formed = await kit.join(group, "cy")
    assert formed["state"] == "formed" and formed["members"] == 3 and formed["places_left"] == 0
    orders = await kit.pg.fetch(
        "SELECT buyer_id, qty, price_cents, total_cents, group_id FROM orders "
        "WHERE sale_id = $1 ORDER BY buyer_id",
        sale,
    )
    assert [(o["buyer_id"], o["price_cents"], o["group_id"]) for o in orders] == [
        ("ann", 600, group),
        ("bob", 600, group),
        ("cy", 600, group),
    ]
    facts = await kit.facts(sale)
    assert facts["redis"] == (9, 0, 0, 3) and facts["sold"] == 3
    outcomes = await kit.pg.fetch(
        "SELECT reservation_id, outcome FROM hold_outcomes WHERE sale_id = $1", sale
    )
    assert sorted(r["reservation_id"] for r in outcomes) == [
        f"group-{group}-ann",
        f"group-{group}-bob",
        f"group-{group}-cy",
    ]
    assert {r["outcome"] for r in outcomes} == {"order"}
    entries = await kit.pg.fetch(
        "SELECT seq, type, cardinality(order_ids) AS n FROM outbox WHERE sale_id = $1 ORDER BY seq",
        sale,
    )
    # sale.started is the sale's event 1; the group's three order.created events are 2, 3, 4
    assert [(e["seq"], e["type"], e["n"]) for e in entries] == [
        (1, "sale.started", None),
        (2, "order.created", 3),
    ]
    assert await kit.pg.fetchval("SELECT event_seq FROM sales WHERE id = $1", sale) == 4
    types = [e["type"] for e in await kit.events("group_started", "group_progress", "group_formed")]
    assert types == ["group_started", "group_progress", "group_formed"]
    started = await kit.events("sale_started")
    assert [e["data"]["sale"]["state"] for e in started] == ["open"]  # as it is now, not was
    assert (await kit.service.group(group, viewer("ann")))["state"] == "formed"
    figures = await kit.service.figures(sale, HOST)
    assert (figures["orders"], figures["revenue_cents"], figures["remaining"]) == (3, 1800, 9)


async def test_a_member_leaves_and_the_hold_goes_back(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    left = await kit.leave(group, "bob")
    assert (left["members"], left["joined"], left["state"]) == (1, False, "forming")
    facts = await kit.facts(sale)
    assert facts["redis"] == (11, 1, 0, 0)
    members = await kit.pg.fetch("SELECT buyer_id FROM group_members WHERE group_id = $1", group)
    assert [m["buyer_id"] for m in members] == ["ann"]
    again = await kit.join(group, "bob")  # a member who left may come back
    assert again["members"] == 2


async def test_the_last_member_leaving_fails_the_group(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    gone = await kit.leave(group, "ann")
    assert gone["state"] == "failed"
    facts = await kit.facts(sale)
    assert facts["redis"] == (12, 0, 0, 0)
    assert await kit.pg.fetchval("SELECT state FROM groups WHERE id = $1", group) == "failed"
    assert [e["type"] for e in await kit.events("group_failed")] == ["group_failed"]


async def test_a_window_closing_short_releases_every_hold(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    await kit.close_window(sale, group)
    await kit.service.sweep()
    facts = await kit.facts(sale)
    assert facts["redis"] == (12, 0, 0, 0) and facts["orders"] == 0
    assert await kit.pg.fetchval("SELECT state FROM groups WHERE id = $1", group) == "failed"
    voids = await kit.pg.fetchval(
        "SELECT count(*) FROM hold_outcomes WHERE sale_id = $1 AND outcome = 'void'", sale
    )
    assert voids == 2
    assert (await kit.service.group(group))["state"] == "failed"
    assert [e["type"] for e in await kit.events("group_failed")] == ["group_failed"]
    await kit.service.sweep()  # again: nothing more happens
    assert len(await kit.events("group_failed")) == 1
    # The room heard the stock left after each change: the start, the join, the failure.
    stock = [(e["data"]["remaining"], e["key"]) for e in await kit.events("stock")]
    assert stock == [(11, f"stock:{sale}"), (10, f"stock:{sale}"), (12, f"stock:{sale}")]


async def test_a_join_after_the_window_closed_fails_the_group_there(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.close_window(sale, group)
    with pytest.raises(Conflict) as refused:
        await kit.join(group, "bob")
    assert refused.value.code == "group_failed"
    figures = await kit.service.pool.peek(sale)
    assert figures is not None and (figures.remaining, figures.held) == (12, 0)
    await kit.service.sweep()  # PostgreSQL learns it from the sweep
    assert await kit.pg.fetchval("SELECT state FROM groups WHERE id = $1", group) == "failed"
    assert (await kit.facts(sale))["redis"] == (12, 0, 0, 0)


async def test_a_stop_fails_the_forming_groups_and_keeps_the_formed(kit: Kit) -> None:
    sale = await kit.open()
    formed = await kit.start(sale, "ann")
    await kit.join(formed, "bob")
    await kit.join(formed, "cy")
    forming = await kit.start(sale, "dee")
    await kit.service.stop_sale(sale, HOST)
    rows = await kit.pg.fetch("SELECT id, state FROM groups WHERE sale_id = $1", sale)
    states = {r["id"]: r["state"] for r in rows}
    assert states == {formed: "formed", forming: "failed"}
    ended = await kit.events("sale_ended")
    assert [e["data"]["sale"]["state"] for e in ended] == ["ended"]
    facts = await kit.facts(sale)
    assert facts["redis"] == (9, 0, 0, 3) and facts["orders"] == 3
    for user in ("eve", "fay"):
        with pytest.raises(Conflict) as refused:
            await kit.service.start_group(sale, viewer(user))
        assert refused.value.code == "not_open"


async def test_open_groups_are_listed_with_places_left(kit: Kit) -> None:
    sale = await kit.open()
    first = await kit.start(sale, "ann")
    second = await kit.start(sale, "bob")
    await kit.join(second, "cy")
    full = await kit.start(sale, "dee")
    await kit.join(full, "eve")
    await kit.join(full, "fay")
    listed = await kit.service.groups(sale)
    assert [(g["id"], g["places_left"]) for g in listed] == [(first, 2), (second, 1)]
    assert all("joined" not in g for g in listed)


async def test_limits_count_every_place_held_or_bought(kit: Kit) -> None:
    sale = await kit.open(limit_per_buyer=1)
    group = await kit.start(sale, "ann")
    before = await kit.facts(sale)
    with pytest.raises(Conflict) as refused:
        await kit.service.start_group(sale, viewer("ann"))
    assert refused.value.code == "limit"
    after = await kit.facts(sale)
    assert after["redis"] == before["redis"]
    assert [g[0] for g in after["groups"]] == [group]


async def test_room_snapshot_and_figures_after_a_sellout(kit: Kit) -> None:
    sale = await kit.open(stock=3, limit_per_buyer=1)
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    await kit.join(group, "cy")
    with pytest.raises(Conflict) as refused:
        await kit.service.start_group(sale, viewer("dee"))
    assert refused.value.code == "sold_out"
    figures = await kit.service.figures(sale, HOST)
    assert (figures["remaining"], figures["orders"], figures["groups_formed"]) == (0, 3, 1)
    assert ROOM == figures["room"]


async def test_the_scheduler_opens_and_ends_deals_on_time(kit: Kit) -> None:
    view = await kit.service.create(
        ROOM,
        HOST,
        kit.product_id,
        price_cents=1000,
        group_price_cents=600,
        stock=6,
        limit_per_buyer=1,
        group_size=2,
        group_window_s=60,
    )
    sale = int(view["id"])
    await kit.pg.execute(
        "UPDATE sales SET starts_at = now() - interval '1 second' WHERE id = $1", sale
    )
    await kit.service.run_scheduler()
    assert (await kit.service.deal(sale)).state.value == "open"
    group = await kit.start(sale, "ann")
    await kit.pg.execute(
        "UPDATE sales SET ends_at = now() - interval '1 second' WHERE id = $1", sale
    )
    await kit.service.run_scheduler()
    assert (await kit.service.deal(sale)).state.value == "ended"
    assert await kit.pg.fetchval("SELECT state FROM groups WHERE id = $1", group) == "failed"
    assert (await kit.facts(sale))["redis"] == (6, 0, 0, 0)


def test_every_key_of_a_pool_shares_the_sales_hash_tag() -> None:
    keys = GroupKeys.of("p:", 42)
    assert {key.split("{")[1].split("}")[0] for key in keys.all} == {"sale:42"}
    assert len(set(keys.all)) == 5


async def test_the_sale_routes_can_tell_a_group_deal(kit: Kit) -> None:
    sale = await kit.open()
    flash = await kit.service.sales.create(ROOM, kit.product_id, 1000, 5, 1, 60, None, None)
    assert flash is not None
    assert await kit.service.is_group(sale)
    assert not await kit.service.is_group(flash.id)
    assert not await kit.service.is_group(987654)
    with pytest.raises(NotFound):
        await kit.service.deal(flash.id)  # a flash sale is no group deal
