"""Group deals and groups as PostgreSQL rows: the deal's query and the values made of its rows,
shared by the store (store.py) and a rebuild's take-over (takeover.py)."""

from __future__ import annotations

import asyncpg

from flash_sales.group_deals.model import Group, GroupDeal, GroupState, ms
from flash_sales.sale_rows import sale_fields

DEAL = """
SELECT s.id, s.room_id, s.product_id, s.price_cents, s.stock, s.sold, s.limit_per_buyer,
       s.state, s.ends_at, d.group_price_cents, d.group_size, d.window_ms, d.epoch
FROM sales s JOIN group_deals d ON d.sale_id = s.id
"""


def deal_of(row: asyncpg.Record) -> GroupDeal:
    return GroupDeal(
        sale_id=row["id"],
        group_price_cents=row["group_price_cents"],
        group_size=row["group_size"],
        window_ms=row["window_ms"],
        epoch=row["epoch"],
        **sale_fields(row),
    )


def group_of(row: asyncpg.Record) -> Group:
    """A group from a row of `groups` with its `members` aggregated."""
    return Group(
        id=row["id"],
        sale_id=row["sale_id"],
        size=row["size"],
        state=GroupState(row["state"]),
        members=tuple(row["members"]),
        closes_at_ms=ms(row["closes_at"]),
        starter=row["starter_id"],
    )
