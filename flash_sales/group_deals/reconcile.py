"""Compare a group deal's pool in Redis with its record in PostgreSQL and say whether the
invariants hold (for `live reconcile` and the load tester's verdict):
- Redis: `stock = remaining + held + filling + sold`, none negative; `held` is the members of
  its forming groups, `filling` those of its filling ones; each buyer's places (held + filling
  + bought) within the limit;
- PostgreSQL: `sold <= stock`, `sold` = the orders' items; every formed group has exactly its
  size in members and one order per member, every other group none (never a partial group);
  each order a hold decided 'order' once;
- across the two (while the pool is `ok` and nothing is filling): the same `sold`, and the
  members of the forming groups the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from flash_sales.group_deals.model import GroupState
from flash_sales.group_deals.pool import GroupPool
from flash_sales.group_deals.store import GroupStore


@dataclass(frozen=True)
class GroupReport:
    sale_id: int
    pool: str  # "ok", "absent", "stale", "fenced"
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def reconcile(store: GroupStore, pool: GroupPool, sale_id: int) -> GroupReport:
    deal = await store.deal(sale_id)
    if deal is None:
        return GroupReport(sale_id, "absent", ("no such group deal",))
    problems: list[str] = []
    async with store.pg.acquire() as conn:
        items = await conn.fetchval(
            "SELECT coalesce(sum(qty), 0) FROM orders WHERE sale_id = $1", sale_id
        )
        partial = await conn.fetch(
            """SELECT g.id, g.state, g.size,
                      (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS members,
                      (SELECT count(*) FROM orders o WHERE o.group_id = g.id) AS orders
               FROM groups g WHERE g.sale_id = $1""",
            sale_id,
        )
        undecided = await conn.fetchval(
            """SELECT count(*) FROM orders o
               LEFT JOIN hold_outcomes h
                 ON h.reservation_id = o.reservation_id AND h.outcome = 'order'
               WHERE o.sale_id = $1 AND h.reservation_id IS NULL""",
            sale_id,
        )
        forming = await conn.fetch(
            """SELECT m.group_id, m.buyer_id FROM group_members m
               JOIN groups g ON g.id = m.group_id
               WHERE g.sale_id = $1 AND g.state = 'forming'""",
            sale_id,
        )
    if deal.sold > deal.stock:
        problems.append(f"postgres sold {deal.sold} > stock {deal.stock}")
    if items != deal.sold:
        problems.append(f"postgres sold {deal.sold} != items in orders {items}")
    if undecided:
        problems.append(f"postgres: {undecided} orders without an 'order' outcome")
    for g in partial:
        want = g["size"] if g["state"] == GroupState.FORMED else 0
        if g["orders"] != want or (g["state"] == GroupState.FORMED and g["members"] != want):
            problems.append(
                f"group {g['id']} ({g['state']}): {g['members']} members, {g['orders']} orders"
            )
    figures = await pool.peek(sale_id)
    if figures is None:
        return GroupReport(sale_id, "absent", tuple(problems))
    counts = (figures.remaining, figures.held, figures.filling, figures.sold)
    if min(counts) < 0 or sum(counts) != figures.stock:
        problems.append(f"redis stock {figures.stock} != remaining+held+filling+sold {counts}")
    live = {g.id: g for g in figures.groups}
    members = sum(len(g.members) for g in figures.groups if g.state is GroupState.FORMING)
    if len(figures.groups) < 200 and figures.held != members:
        problems.append(f"redis held {figures.held} != {members} members of its forming groups")
    if figures.status == "ok" and figures.filling == 0:
        if figures.sold != deal.sold:
            problems.append(f"redis sold {figures.sold} != postgres sold {deal.sold}")
        recorded = sorted((r["group_id"], r["buyer_id"]) for r in forming)
        in_redis = sorted(
            (gid, m) for gid, g in live.items() if g.state is GroupState.FORMING for m in g.members
        )
        if recorded != in_redis and len(figures.groups) < 200:
            problems.append(f"forming members differ: postgres {recorded}, redis {in_redis}")
    return GroupReport(sale_id, figures.status, tuple(problems))


async def reconcile_deals(
    store: GroupStore, pool: GroupPool, sale_ids: list[int]
) -> list[GroupReport]:
    return [await reconcile(store, pool, sale_id) for sale_id in sale_ids]


def render(reports: list[GroupReport]) -> str:
    lines = [f"{'group deal':>10} {'pool':<7}  verdict"]
    for r in reports:
        verdict = "ok" if r.ok else "BROKEN: " + "; ".join(r.problems)
        lines.append(f"{r.sale_id:>10} {r.pool:<7}  {verdict}")
    return "\n".join(lines)
