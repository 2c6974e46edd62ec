"""Group deals in PostgreSQL, the system of record: the deal, its groups and their members,
and the orders of a formed group.

Redis decides every start, join and leave (pool.py); each is written here before it is
acknowledged, and only while the deal's `epoch` names the pool that decided it: a rebuild
renews the epoch under the deal row's lock (takeover.py), while every write holds a share lock
on that row, so a write of a replaced pool commits before the rebuild reads, or not at all
(PoolReplaced). What Redis decided but was never acknowledged (its write failed: 503) may be
lost by a rebuild, as it should.

A group is decided once, by a guarded move from 'forming' under the group row's lock: `form`
writes every member's order in one transaction (a hold outcome 'order' per member, the orders
at the group price, `sales.sold` and each buyer's `sale_buyers.bought` under their CHECKs, the
batch's `order.created` outbox entry, the group 'formed'); a guard that fails rolls it all back
and the group fails instead. Never a partial group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from flash_sales.group_deals.model import DealConfig, Group, GroupDeal, GroupState, hold_id
from flash_sales.group_deals.rows import DEAL, deal_of, group_of
from flash_sales.model import Order, SaleState
from flash_sales.outbox import ORDER_CREATED, Conn
from flash_sales.referrals import referrer_sql
from flash_sales.sale_rows import DUE, insert_sale
from flash_sales.store import ORDER_COLUMNS, order_of


class PoolReplaced(Exception):
    """The pool that decided this change was replaced by a rebuild: nothing was written."""


@dataclass(frozen=True)
class Formed:
    """The group's orders; `fresh` when this call formed it (it is announced once)."""

    orders: tuple[Order, ...]
    fresh: bool = True


@dataclass(frozen=True)
class Failed:
    """A guard refused the group's orders (`sold_out`, `limit`), its members were not its size
    (`size`: a leave whose write failed, then a rebuild from PostgreSQL), or it was failed before
    (`failed`); `fresh` when this call failed it."""

    reason: Literal["sold_out", "limit", "size", "failed"]
    fresh: bool = True


_GUARDS: dict[str, Literal["sold_out", "limit"]] = {
    "sales_never_oversold": "sold_out",
    "sale_buyers_within_limit": "limit",
}


def moment(ms_value: int) -> datetime:
    return datetime.fromtimestamp(ms_value / 1000, UTC)


class GroupStore:
    def __init__(self, pg: asyncpg.Pool) -> None:
        self.pg = pg

    async def create(
        self,
        room: str,
        product_id: int,
        config: DealConfig,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> GroupDeal | None:
        """The new deal (scheduled), or None when the product is not in the room."""
        async with self.pg.acquire() as conn, conn.transaction():
            sale = await insert_sale(
                conn,
                room,
                product_id,
                config.price_cents,
                config.stock,
                config.limit_per_buyer,
                max(config.window_ms // 1000, 1),
                starts_at,
                ends_at,
                kind="group",
            )
            if sale is None:
                return None
            sale_id = sale["id"]
            await conn.execute(
                "INSERT INTO group_deals (sale_id, group_size, window_ms, group_price_cents) "
                "VALUES ($1, $2, $3, $4)",
                sale_id,
                config.group_size,
                config.window_ms,
                config.group_price_cents,
            )
            row = await conn.fetchrow(DEAL + "WHERE s.id = $1", sale_id)
        assert row is not None
        return deal_of(row)

    async def deal(self, sale_id: int) -> GroupDeal | None:
        row = await self.pg.fetchrow(DEAL + "WHERE s.id = $1", sale_id)
        return None if row is None else deal_of(row)

    async def deals_to_sweep(self) -> list[GroupDeal]:
        """The live deals, and any other with a group still forming in PostgreSQL."""
        rows = await self.pg.fetch(
            DEAL
            + """WHERE s.state IN ('open', 'sold_out')
                    OR s.id IN (SELECT sale_id FROM groups WHERE state = 'forming')
                 ORDER BY s.id LIMIT 1000"""
        )
        return [deal_of(r) for r in rows]

    async def due(self) -> list[tuple[GroupDeal, SaleState]]:
        """Deals whose time has come, and the state to move each to."""
        rows = await self.pg.fetch(f"{DEAL} WHERE {DUE} LIMIT 100")
        due = []
        for row in rows:
            deal = deal_of(row)
            ended = row["ends_at"] is not None and row["ends_at"] <= datetime.now(UTC)
            due.append((deal, SaleState.ENDED if ended or deal.live else SaleState.OPEN))
        return due

    async def kind(self, sale_id: int) -> str | None:
        """The sale's kind (`flash`, `group`), None for no such sale."""
        found = await self.pg.fetchval("SELECT kind FROM sales WHERE id = $1", sale_id)
        return None if found is None else str(found)

    async def sale_of(self, group_id: int) -> int | None:
        """The sale of a group PostgreSQL has."""
        found = await self.pg.fetchval("SELECT sale_id FROM groups WHERE id = $1", group_id)
        return None if found is None else int(found)

    async def name_pool(self, sale_id: int, epoch: str) -> str:
        """The deal's pool name: `epoch` if it had none yet, else the one it has."""
        named = await self.pg.fetchval(
            "UPDATE group_deals SET epoch = coalesce(epoch, $2) WHERE sale_id = $1 RETURNING epoch",
            sale_id,
            epoch,
        )
        return str(named)

    async def next_group_id(self) -> int:
        """A group id never given before, whatever Redis forgets."""
        return int(await self.pg.fetchval("SELECT nextval(pg_get_serial_sequence('groups', 'id'))"))

    async def start_id(self, sale_id: int, buyer: str, key: str) -> tuple[int, bool]:
        """The group id of the buyer's start with this idempotency key, and whether it is new:
        a new id the first time, the same one after (a concurrent twin that lost the insert
        reads the winner's)."""
        claimed = await self.pg.fetchval(
            """INSERT INTO group_starts (sale_id, buyer_id, start_key, group_id)
               VALUES ($1, $2, $3, nextval(pg_get_serial_sequence('groups', 'id')))
               ON CONFLICT DO NOTHING RETURNING group_id""",
            sale_id,
            buyer,
            key,
        )
        if claimed is not None:
            return int(claimed), True
        earlier = await self.pg.fetchval(
            "SELECT group_id FROM group_starts "
            "WHERE sale_id = $1 AND buyer_id = $2 AND start_key = $3",
            sale_id,
            buyer,
            key,
        )
        return int(earlier), False

    async def _guard(self, conn: Conn, sale_id: int, epoch: str) -> None:
        found = await conn.fetchval(
            "SELECT true FROM group_deals WHERE sale_id = $1 AND epoch = $2 FOR SHARE",
            sale_id,
            epoch,
        )
        if not found:
            raise PoolReplaced(f"group sale {sale_id}: pool {epoch!r} was replaced")

    async def _ensure_group(self, conn: Conn, group: Group) -> str:
        """The group's row, made from what Redis said of it if missing (its start's write may
        have failed); its state, the row locked."""
        await conn.execute(
            """INSERT INTO groups (id, sale_id, size, starter_id, closes_at)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING""",
            group.id,
            group.sale_id,
            group.size,
            group.starter or (group.members[0] if group.members else "?"),
            moment(group.closes_at_ms),
        )
        state = await conn.fetchval("SELECT state FROM groups WHERE id = $1 FOR UPDATE", group.id)
        return str(state)

    async def record_join(self, epoch: str, group: Group, buyer: str) -> bool:
        """Record a start or a join the pool `epoch` decided; False when PostgreSQL has the
        group decided already (the answer then comes from it). Raises PoolReplaced."""
        async with self.pg.acquire() as conn, conn.transaction():
            await self._guard(conn, group.sale_id, epoch)
            if await self._ensure_group(conn, group) != GroupState.FORMING:
                return False
            await conn.execute(
                "INSERT INTO group_members (group_id, buyer_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                group.id,
                buyer,
            )
        return True

    async def record_leave(self, epoch: str, group: Group, buyer: str) -> bool:
        """Record a leave the pool `epoch` decided; whether a member row went (a group its last
        member left is failed by `fail`). Raises PoolReplaced."""
        async with self.pg.acquire() as conn, conn.transaction():
            await self._guard(conn, group.sale_id, epoch)
            if await self._ensure_group(conn, group) != GroupState.FORMING:
                return False
            gone = await conn.fetchval(
                "DELETE FROM group_members WHERE group_id = $1 AND buyer_id = $2 RETURNING true",
                group.id,
                buyer,
            )
        return bool(gone)

    async def form(self, deal: GroupDeal, epoch: str, group: Group) -> Formed | Failed:
        """Every member of the full `group` an order at the group price, all or nothing; or
        the group failed (a guard refused). Idempotent: a formed group answers its orders.
        Raises PoolReplaced, or a storage error (then nothing or all of it was written)."""
        try:
            async with self.pg.acquire() as conn, conn.transaction():
                return await self._form(conn, deal, epoch, group)
        except asyncpg.CheckViolationError as exc:
            reason = _GUARDS.get(getattr(exc, "constraint_name", "") or "")
            if reason is None:
                raise
        async with self.pg.acquire() as conn, conn.transaction():
            await self._guard(conn, deal.sale_id, epoch)
            state = await self._ensure_group(conn, group)
            if state == GroupState.FORMED:  # formed by another process meanwhile
                return Formed(await self._orders(conn, group.id), fresh=False)
            fresh = await self._fail(conn, group.id)
        return Failed(reason, fresh=fresh)

    async def _form(self, conn: Conn, deal: GroupDeal, epoch: str, group: Group) -> Formed | Failed:
        await self._guard(conn, deal.sale_id, epoch)
        state = await self._ensure_group(conn, group)
        if state == GroupState.FORMED:
            return Formed(await self._orders(conn, group.id), fresh=False)
        if state == GroupState.FAILED:
            return Failed("failed", fresh=False)
        members = sorted(set(group.members))
        if len(members) != deal.group_size:  # no partial nor oversized group is ever ordered
            return Failed("size", fresh=await self._fail(conn, group.id))
        # The members are those the pool decided (a leave or join it decided whose write
        # failed is as it said).
        await conn.execute(
            "DELETE FROM group_members WHERE group_id = $1 AND NOT buyer_id = ANY($2::text[])",
            group.id,
            members,
        )
        await conn.execute(
            "INSERT INTO group_members (group_id, buyer_id) SELECT $1, unnest($2::text[]) "
            "ON CONFLICT DO NOTHING",
            group.id,
            members,
        )
        holds = [hold_id(group.id, m) for m in members]
        # One outcome per hold: a plain INSERT, so a hold decided before fails the whole group.
        await conn.execute(
            "INSERT INTO hold_outcomes (reservation_id, sale_id, outcome) "
            "SELECT unnest($1::text[]), $2, 'order'",
            holds,
            deal.sale_id,
        )
        rows = await conn.fetch(
            f"""INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents,
                                   total_cents, payment_ref, group_id, referrer_id)
                SELECT h, $2, b, 1, $3::int, $3::int::bigint, 'group-' || $4::bigint::text, $4,
                       {referrer_sql("(SELECT room_id FROM sales WHERE id = $2)", "i.b")}
                FROM unnest($1::text[], $5::text[]) AS i (h, b)
                RETURNING {ORDER_COLUMNS}""",
            holds,
            deal.sale_id,
            deal.group_price_cents,
            group.id,
            members,
        )
        if len(rows) != len(members):
            raise RuntimeError(f"group {group.id}: {len(rows)} orders for {len(members)}")
        seq = await conn.fetchval(
            "UPDATE sales SET sold = sold + $2, event_seq = event_seq + $2 WHERE id = $1 "
            "RETURNING event_seq",
            deal.sale_id,
            len(rows),
        )
        await conn.execute(
            """INSERT INTO sale_buyers (sale_id, buyer_id, bought, max_per_buyer)
               SELECT $1, unnest($2::text[]), 1, $3
               ON CONFLICT (sale_id, buyer_id)
               DO UPDATE SET bought = sale_buyers.bought + EXCLUDED.bought""",
            deal.sale_id,
            members,
            deal.limit_per_buyer,
        )
        orders = tuple(sorted((order_of(r) for r in rows), key=lambda o: o.id))
        await conn.execute(
            "INSERT INTO outbox (sale_id, seq, type, order_ids) VALUES ($1, $2, $3, $4)",
            deal.sale_id,
            seq - len(orders) + 1,
            ORDER_CREATED,
            [o.id for o in orders],
        )
        moved = await conn.fetchval(
            "UPDATE groups SET state = 'formed', decided_at = now() "
            "WHERE id = $1 AND state = 'forming' RETURNING true",
            group.id,
        )
        if not moved:
            raise RuntimeError(f"group {group.id} left 'forming' under its lock")
        return Formed(orders)

    async def _orders(self, conn: Conn, group_id: int) -> tuple[Order, ...]:
        rows = await conn.fetch(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE group_id = $1 ORDER BY id", group_id
        )
        return tuple(order_of(r) for r in rows)

    async def _fail(self, conn: Conn, group_id: int) -> bool:
        moved = await conn.fetchval(
            "UPDATE groups SET state = 'failed', decided_at = now() "
            "WHERE id = $1 AND state = 'forming' RETURNING sale_id",
            group_id,
        )
        if moved is None:
            return False
        await conn.execute(
            """INSERT INTO hold_outcomes (reservation_id, sale_id, outcome)
               SELECT 'group-' || group_id::text || '-' || buyer_id, $2, 'void'
               FROM group_members WHERE group_id = $1
               ON CONFLICT (reservation_id) DO NOTHING""",
            group_id,
            moved,
        )
        return True

    async def fail(self, group_ids: Sequence[int]) -> list[int]:
        """Fail these groups if they are still forming (their window closed, their last member
        left, or their sale stopped: decided whatever pool decided it); those it failed."""
        failed = []
        async with self.pg.acquire() as conn:
            for group_id in sorted(set(group_ids)):
                async with conn.transaction():
                    if await self._fail(conn, group_id):
                        failed.append(group_id)
        return failed

    async def group(self, group_id: int) -> Group | None:
        row = await self.pg.fetchrow(
            """SELECT g.id, g.sale_id, g.size, g.state, g.starter_id, g.closes_at,
                      coalesce(array_agg(m.buyer_id ORDER BY m.joined_at, m.buyer_id)
                               FILTER (WHERE m.buyer_id IS NOT NULL), '{}') AS members
               FROM groups g LEFT JOIN group_members m ON m.group_id = g.id
               WHERE g.id = $1 GROUP BY g.id""",
            group_id,
        )
        return None if row is None else group_of(row)

    async def forming_past(self, sale_id: int, grace_s: float) -> list[int]:
        """Groups still forming here whose window closed more than `grace_s` ago."""
        rows = await self.pg.fetch(
            "SELECT id FROM groups WHERE sale_id = $1 AND state = 'forming' "
            "AND closes_at < now() - make_interval(secs => $2) ORDER BY id LIMIT 500",
            sale_id,
            grace_s,
        )
        return [r["id"] for r in rows]

    async def figures(self, sale_id: int) -> dict[str, int]:
        row = await self.pg.fetchrow(
            """SELECT count(*) AS orders, coalesce(sum(total_cents), 0) AS revenue,
                      count(DISTINCT group_id) AS groups
               FROM orders WHERE sale_id = $1""",
            sale_id,
        )
        assert row is not None
        return {
            "orders": int(row["orders"]),
            "revenue_cents": int(row["revenue"]),
            "groups_formed": int(row["groups"]),
        }
