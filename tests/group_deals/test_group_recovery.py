"""The fault standard of flash sales (issue 12) for group deals: an acknowledged start, join,
leave or formation survives Redis forgetting it (a restart under a new run id, a rollback to an
earlier snapshot, the pool lost): the stale pool is rebuilt from PostgreSQL before it takes
another change. A write of a replaced pool is refused (never recorded), a formation cut off
between Redis and PostgreSQL is finished by the sweep, and never a group is ordered in part
nor an item sold twice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from group_kit import HOST, Kit, kit, store_away, viewer

from flash_sales.group_deals.model import GroupState
from flash_sales.group_deals.service import GroupDeals
from flash_sales.group_deals.store import PoolReplaced
from live.redis_client import open_redis
from rooms.errors import STORAGE_ERRORS, Unavailable

__all__ = ["kit"]


async def _restart(kit: Kit, sale: int) -> None:
    """As if Redis restarted: the pool's run id is not the server's any more."""
    await kit.redis.hset(kit.service.pool.keys(sale).state, "run_id", "an-earlier-run")


async def _dump(kit: Kit, sale: int) -> dict[str, Any]:
    return {key: await kit.redis.dump(key) for key in kit.service.pool.keys(sale).all}


async def _roll_back(kit: Kit, sale: int, dumped: dict[str, Any]) -> None:
    """As if Redis came back from an earlier snapshot (under a new run id)."""
    for key, value in dumped.items():
        await kit.redis.delete(key)
        if value is not None:
            await kit.redis.restore(key, 0, value)
    await _restart(kit, sale)


async def test_a_restart_is_rebuilt_from_postgresql_before_the_next_join(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    before = await kit.facts(sale)
    await _restart(kit, sale)
    view = await kit.join(group, "cy")  # rebuilds, then joins: the group forms
    assert view["state"] == "formed"
    assert kit.service.rebuilder.rebuilt == 1
    facts = await kit.facts(sale)
    assert facts["redis"] == (9, 0, 0, 3) and facts["orders"] == 3
    assert before["redis"] == (10, 2, 0, 0)


async def test_a_rollback_forgets_nothing_acknowledged(kit: Kit) -> None:
    sale = await kit.open()
    first = await kit.start(sale, "ann")
    dumped = await _dump(kit, sale)
    await kit.join(first, "bob")
    await kit.join(first, "cy")  # formed: 3 orders
    second = await kit.start(sale, "dee")
    await kit.join(second, "eve")
    await kit.leave(second, "eve")
    await _roll_back(kit, sale, dumped)
    await kit.service.sweep()  # finds the pool stale and rebuilds it
    facts = await kit.facts(sale)
    assert facts["redis"] == (8, 1, 0, 3) and facts["orders"] == 3
    live = await kit.service.group(second, viewer("dee"))
    assert (live["members"], live["joined"]) == (1, True)
    with pytest.raises(Exception) as refused:
        await kit.join(first, "fay")  # the formed group is not reopened
    assert getattr(refused.value, "code", "") == "group_full"
    buyers: dict[Any, Any] = await kit.redis.hgetall(kit.service.pool.keys(sale).buyers)
    assert {k.decode(): int(v) for k, v in buyers.items()} == {
        "ann": 1,
        "bob": 1,
        "cy": 1,
        "dee": 1,
    }


async def test_a_lost_pool_is_rebuilt(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.redis.delete(*kit.service.pool.keys(sale).all)
    view = await kit.join(group, "bob")
    assert view["members"] == 2
    assert (await kit.facts(sale))["redis"] == (10, 2, 0, 0)


async def test_a_write_of_a_replaced_pool_is_refused(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    answer = await kit.service.pool.join(sale, group, "bob", start=False)
    assert answer.code == "joined" and answer.group is not None
    await _restart(kit, sale)
    assert await kit.service.rebuilder.rebuild(sale)
    with pytest.raises(PoolReplaced):
        await kit.service.store.record_join(answer.epoch, answer.group, "bob")
    # bob's join was never acknowledged: the rebuilt pool does not have it
    facts = await kit.facts(sale)
    assert facts["redis"] == (11, 1, 0, 0)
    members = await kit.pg.fetch("SELECT buyer_id FROM group_members WHERE group_id = $1", group)
    assert [m["buyer_id"] for m in members] == ["ann"]


async def test_a_formation_cut_off_is_finished_by_the_sweep(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    with store_away(kit, "form"):
        with pytest.raises(STORAGE_ERRORS):
            await kit.join(group, "cy")
        assert (await kit.facts(sale))["redis"] == (9, 0, 3, 0)
        assert await kit.pg.fetchval("SELECT count(*) FROM orders WHERE sale_id = $1", sale) == 0
    await kit.service.sweep()
    facts = await kit.facts(sale)
    assert facts["redis"] == (9, 0, 0, 3) and facts["orders"] == 3
    assert (await kit.service.group(group))["state"] == "formed"
    assert [e["type"] for e in await kit.events("group_formed")] == ["group_formed"]


async def test_a_formation_refused_by_postgresql_fails_the_whole_group(kit: Kit) -> None:
    """Redis lost what it sold (same run id, so not stale): PostgreSQL's guard refuses the
    group's orders, all of them, and the group fails with its holds released."""
    sale = await kit.open(stock=4, limit_per_buyer=1, group_size=3)
    first = await kit.start(sale, "ann")
    await kit.join(first, "bob")
    await kit.join(first, "cy")  # 3 of 4 sold
    keys = kit.service.pool.keys(sale)
    await kit.redis.hset(keys.state, mapping={"remaining": 4, "sold": 0})  # forgot them
    await kit.redis.delete(keys.buyers)
    second = await kit.start(sale, "dee")
    await kit.join(second, "eve")
    view = await kit.join(second, "fay")
    assert view["state"] == "failed"
    assert await kit.pg.fetchval("SELECT sold FROM sales WHERE id = $1", sale) == 3
    assert await kit.pg.fetchval("SELECT count(*) FROM orders WHERE group_id = $1", second) == 0
    assert await kit.pg.fetchval("SELECT state FROM groups WHERE id = $1", second) == "failed"


async def test_fenced_by_another_rebuild_is_unavailable(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await _restart(kit, sale)
    assert await kit.service.pool.fence(sale, "someone-else", 60_000) == "fenced"
    with pytest.raises(Unavailable) as refused:
        await kit.join(group, "bob")
    assert refused.value.retry_after_s


async def test_redis_away_is_a_storage_error_and_changes_nothing(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    before = await kit.facts(sale)
    away = open_redis("redis://127.0.0.1:1/0", 0.5)
    try:
        cut = GroupDeals(kit.pg, away, "t-away:", kit.room_log)
        for call in (
            cut.join(group, viewer("bob")),
            cut.leave(group, viewer("ann")),
            cut.start_group(sale, viewer("cy")),
        ):
            with pytest.raises(STORAGE_ERRORS):
                await call
    finally:
        await away.aclose()
    assert await kit.facts(sale) == before


async def test_a_full_group_whose_orders_were_not_written_survives_a_restart_as_forming(
    kit: Kit,
) -> None:
    """The join that filled the group was never acknowledged (its orders failed), then Redis
    restarted: the rebuilt pool has the group forming with the members PostgreSQL has, no
    order exists, and the group can still fill."""
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    with store_away(kit, "form"):
        with pytest.raises(STORAGE_ERRORS):
            await kit.join(group, "cy")
    await _restart(kit, sale)
    await kit.service.sweep()
    facts = await kit.facts(sale)
    assert facts["redis"] == (10, 2, 0, 0) and facts["orders"] == 0
    view = await kit.join(group, "dee")
    assert view["state"] == "formed"
    buyers = await kit.pg.fetch("SELECT buyer_id FROM orders WHERE group_id = $1", group)
    assert sorted(b["buyer_id"] for b in buyers) == ["ann", "bob", "dee"]
    assert (await kit.facts(sale))["redis"] == (9, 0, 0, 3)


async def test_a_leave_whose_write_failed_is_finished_by_its_retry(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    with store_away(kit, "record_leave"):
        with pytest.raises(STORAGE_ERRORS):
            await kit.leave(group, "bob")
    view = await kit.leave(group, "bob")  # Redis let bob go; PostgreSQL learns it now
    assert (view["members"], view["joined"]) == (1, False)
    await kit.facts(sale)  # Redis and PostgreSQL agree again
    with pytest.raises(Exception) as again:
        await kit.leave(group, "bob")
    assert getattr(again.value, "code", "") == "not_member"


async def test_a_join_whose_write_failed_is_recorded_by_its_retry(kit: Kit) -> None:
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    with store_away(kit, "record_join"):
        with pytest.raises(STORAGE_ERRORS):
            await kit.join(group, "bob")
    with pytest.raises(Exception) as retried:
        await kit.join(group, "bob")  # answered: a member already, and recorded now
    assert getattr(retried.value, "code", "") == "already_member"
    await kit.facts(sale)
    members = await kit.pg.fetch("SELECT buyer_id FROM group_members WHERE group_id = $1", group)
    assert sorted(m["buyer_id"] for m in members) == ["ann", "bob"]


async def test_a_leave_never_written_then_a_restart_never_orders_an_oversized_group(
    kit: Kit,
) -> None:
    """PostgreSQL may keep a member who left (the leave's write failed and was not retried):
    rebuilt from it, the group is at its size while forming. It takes nobody more, and a
    formation of it with the wrong count fails it: never an order of a group not its size."""
    sale = await kit.open()  # groups of 3
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    with store_away(kit, "record_leave"):
        with pytest.raises(STORAGE_ERRORS):
            await kit.leave(group, "bob")  # Redis let bob go; PostgreSQL still lists him
    await kit.join(group, "cy")  # Redis: ann, cy; PostgreSQL: ann, bob, cy
    await _restart(kit, sale)
    with pytest.raises(Exception) as full:
        await kit.join(group, "dee")  # rebuilt with three members: full, not filled
    assert getattr(full.value, "code", "") == "group_full"
    _, restored = await kit.service.pool.group(sale, group)
    assert restored is not None and sorted(restored.members) == ["ann", "bob", "cy"]
    # A formation handed the wrong count (as a pool restored like this could) fails the group.
    figures = await kit.service.pool.peek(sale)
    assert figures is not None
    oversized = replace(restored, members=(*restored.members, "dee"))
    decided = await kit.service.decider.form(await kit.service.deal(sale), figures.epoch, oversized)
    assert decided.state is GroupState.FAILED
    assert await kit.pg.fetchval("SELECT count(*) FROM orders WHERE group_id = $1", group) == 0
    await kit.close_window(sale, group)
    await kit.service.sweep()
    facts = await kit.facts(sale)  # every place back, nothing sold, the stores agree
    assert facts["redis"] == (12, 0, 0, 0) and facts["orders"] == 0


async def test_starting_a_live_deal_again_never_drops_its_groups(kit: Kit) -> None:
    """A start of a deal already open whose pool Redis lost rebuilds it from PostgreSQL: the
    acknowledged places stay held (a fresh pool would put them back on sale)."""
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    await kit.redis.delete(*kit.service.pool.keys(sale).all)
    figures = await kit.service.start_sale(sale, HOST)
    assert (figures["held"], figures["remaining"]) == (2, 10)
    view = await kit.join(group, "cy")
    assert view["state"] == "formed"
    assert (await kit.facts(sale))["redis"] == (9, 0, 0, 3)
