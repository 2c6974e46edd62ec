"""A group's orders carry each member's referrer in the room (share links), written by the same
INSERT that makes them: one member came through a sharer's link, the others did not; the
report finds them through their sale's room."""

from __future__ import annotations

from group_kit import HOST, ROOM, Kit, kit, viewer

from flash_sales.referrals import Referrals

__all__ = ["kit"]  # the fixture, used by name


async def test_a_formed_groups_orders_carry_each_members_referrer(kit: Kit) -> None:
    referrals = Referrals(kit.pg, 5.0)
    await referrals.share(ROOM, viewer("ann"))
    assert await referrals.visit(ROOM, viewer("bob"), "ann", fresh=True)
    assert not await referrals.visit(ROOM, viewer("ann"), "ann", fresh=True)  # not oneself
    sale = await kit.open()
    group = await kit.start(sale, "ann")
    await kit.join(group, "bob")
    formed = await kit.join(group, "cy")
    assert formed["state"] == "formed"
    rows = await kit.pg.fetch(
        "SELECT buyer_id, referrer_id FROM orders WHERE group_id = $1 ORDER BY buyer_id", group
    )
    assert [(r["buyer_id"], r["referrer_id"]) for r in rows] == [
        ("ann", None),
        ("bob", "ann"),
        ("cy", None),
    ]
    (ann,) = (await referrals.report(ROOM, HOST))["sharers"]  # through the sale's room
    assert (ann["visits"], ann["orders"], ann["revenue_cents"]) == (1, 1, 600)
