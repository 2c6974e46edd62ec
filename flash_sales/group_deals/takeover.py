"""A rebuild's take-over of a group deal in PostgreSQL (rebuild.py): it names the rebuild's pool
as the deal's `epoch` under the deal row's lock, so a write of the replaced pool commits before
it or not at all (store.py's PoolReplaced), then reads what the rebuild restores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from flash_sales.group_deals.model import Group, GroupDeal
from flash_sales.group_deals.rows import DEAL, deal_of, group_of


class FenceLost(Exception):
    """A rebuild's fence was no longer its own when it came to name its pool."""


@dataclass(frozen=True)
class Taken:
    """What a rebuild restores: the deal, its forming groups with their members, and what each
    buyer bought of it."""

    deal: GroupDeal
    groups: tuple[Group, ...]
    bought: dict[str, int]


async def take_over(
    pg: asyncpg.Pool, sale_id: int, token: str, still_fenced: Callable[[], Awaitable[bool]]
) -> Taken:
    """Name the pool `token` (under the deal row's lock: writes of the replaced pool commit
    before, or never) and read what the rebuild restores. Raises FenceLost when the rebuild's
    fence is gone by then."""
    async with pg.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE group_deals SET epoch = $2 WHERE sale_id = $1", sale_id, token)
        if not await still_fenced():
            raise FenceLost(f"group sale {sale_id}: the rebuild's fence is gone")
        row = await conn.fetchrow(DEAL + "WHERE s.id = $1", sale_id)
        if row is None:
            raise LookupError(f"no group sale {sale_id}")
        deal = deal_of(row)
        rows = await conn.fetch(
            """SELECT g.id, g.sale_id, g.size, g.state, g.starter_id, g.closes_at,
                      array_agg(m.buyer_id ORDER BY m.joined_at, m.buyer_id) AS members
               FROM groups g JOIN group_members m ON m.group_id = g.id
               WHERE g.sale_id = $1 AND g.state = 'forming'
               GROUP BY g.id ORDER BY g.id""",
            sale_id,
        )
        bought = await conn.fetch(
            "SELECT buyer_id, bought FROM sale_buyers WHERE sale_id = $1", sale_id
        )
    return Taken(
        deal,
        tuple(group_of(r) for r in rows),
        {r["buyer_id"]: r["bought"] for r in bought},
    )
