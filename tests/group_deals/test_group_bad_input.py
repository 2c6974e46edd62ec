"""Bad input and joins that may not be: each is a typed refusal, and nothing changes (the pool
in Redis, every buyer's places, the groups, members, orders and outcomes in PostgreSQL, the
room's events)."""

from __future__ import annotations

from typing import Any

import pytest
from group_kit import HOST, OTHER_ROOM, ROOM, Kit, kit, viewer

from rooms.actors import Actor, Role
from rooms.errors import Conflict, Forbidden, Invalid, NotFound, Refusal

__all__ = ["kit"]

NOT_IDS: list[object] = ["abc", "", "1.5", "-3", "1e3", " 7", 1.5, True, None, 0, -1, 10**20, [1]]


async def _scene(kit: Kit) -> tuple[int, dict[str, int]]:
    """A deal with a formed, a failed, a forming and a nearly full group."""
    sale = await kit.open()
    formed = await kit.start(sale, "ann")
    await kit.join(formed, "bob")
    await kit.join(formed, "cy")
    failed = await kit.start(sale, "dee")
    await kit.leave(failed, "dee")
    forming = await kit.start(sale, "eve")
    return sale, {"formed": formed, "failed": failed, "forming": forming}


@pytest.mark.parametrize(
    ("target", "user", "error", "code"),
    [
        ("formed", "zed", Conflict, "group_full"),
        ("failed", "zed", Conflict, "group_failed"),
        ("forming", "eve", Conflict, "already_member"),
        ("formed", "ann", Conflict, "already_member"),  # a member of a formed group
        ("unknown", "zed", NotFound, "not_found"),
    ],
)
async def test_joins_that_may_not_be(
    kit: Kit, target: str, user: str, error: type[Refusal], code: str
) -> None:
    sale, groups = await _scene(kit)
    group = groups.get(target, 987654)
    before = await kit.facts(sale)
    with pytest.raises(error) as refused:
        await kit.join(group, user)
    assert refused.value.code == code
    assert await kit.facts(sale) == before


async def test_another_rooms_viewer_may_not_join_nor_start(kit: Kit) -> None:
    sale, groups = await _scene(kit)
    stranger = Actor("zed", Role.VIEWER, OTHER_ROOM, "Zed")
    before = await kit.facts(sale)
    with pytest.raises(Forbidden):
        await kit.service.join(groups["forming"], stranger)
    with pytest.raises(Forbidden):
        await kit.service.start_group(sale, stranger)
    with pytest.raises(Forbidden):
        await kit.service.leave(groups["forming"], stranger)
    assert await kit.facts(sale) == before


async def test_a_group_of_another_rooms_deal_stays_its_own(kit: Kit) -> None:
    sale, _ = await _scene(kit)
    other_sale = await kit.open(room=OTHER_ROOM)
    other_group = await kit.service.start_group(other_sale, viewer("olga", OTHER_ROOM))
    before = await kit.facts(sale)
    with pytest.raises(Forbidden):
        await kit.join(other_group["id"], "zed")  # a viewer of ROOM
    assert await kit.facts(sale) == before


@pytest.mark.parametrize("bad", NOT_IDS)
async def test_ids_that_are_not_integers(kit: Kit, bad: object) -> None:
    sale, _ = await _scene(kit)
    before = await kit.facts(sale)
    for call in (
        kit.service.join(bad, viewer("zed")),
        kit.service.leave(bad, viewer("zed")),
        kit.service.group(bad),
        kit.service.start_group(bad, viewer("zed")),
    ):
        with pytest.raises(Invalid):
            await call
    assert await kit.facts(sale) == before


async def test_leaves_that_may_not_be(kit: Kit) -> None:
    sale, groups = await _scene(kit)
    before = await kit.facts(sale)
    cases = [
        ("forming", "zed", "not_member"),
        ("formed", "ann", "group_full"),
        ("failed", "dee", "group_failed"),
    ]
    for target, user, code in cases:
        with pytest.raises(Conflict) as refused:
            await kit.leave(groups[target], user)
        assert refused.value.code == code
    with pytest.raises(NotFound):
        await kit.leave(987654, "zed")
    assert await kit.facts(sale) == before


async def test_groups_of_a_sale_that_is_not_open(kit: Kit) -> None:
    view = await kit.service.create(ROOM, HOST, kit.product_id, **_config())
    with pytest.raises(Conflict) as refused:
        await kit.service.start_group(view["id"], viewer("ann"))
    assert refused.value.code == "not_open"
    with pytest.raises(NotFound):
        await kit.service.start_group(987654, viewer("ann"))
    assert await kit.pg.fetchval("SELECT count(*) FROM groups") == 0


def _config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "price_cents": 1000,
        "group_price_cents": 600,
        "stock": 12,
        "limit_per_buyer": 2,
        "group_size": 3,
        "group_window_s": 60,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"group_size": 1},
        {"group_size": 101},
        {"group_size": 13},  # more than the stock
        {"group_size": "3"},
        {"group_size": 3.0},
        {"group_window_s": 0},
        {"group_window_s": True},
        {"group_window_s": 86_401},
        {"group_price_cents": 1001},  # above the price
        {"group_price_cents": -1},
        {"group_price_cents": None},
        {"stock": 0},
        {"limit_per_buyer": 13},
        {"price_cents": "1000"},
    ],
)
async def test_deals_that_may_not_be_made(kit: Kit, changes: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        await kit.service.create(ROOM, HOST, kit.product_id, **_config(**changes))
    assert await kit.pg.fetchval("SELECT count(*) FROM group_deals") == 0


async def test_only_a_host_makes_and_runs_deals(kit: Kit) -> None:
    with pytest.raises(Forbidden):
        await kit.service.create(ROOM, viewer("ann"), kit.product_id, **_config())
    sale = await kit.open()
    with pytest.raises(Forbidden):
        await kit.service.stop_sale(sale, viewer("ann"))
    with pytest.raises(NotFound):
        await kit.service.create(ROOM, HOST, 987654, **_config())
