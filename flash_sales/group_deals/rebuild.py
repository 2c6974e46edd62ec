"""Rebuild of a group sale's Redis pool from PostgreSQL, before it takes another change.

Redis can lose a pool (flushed, evicted) or take it back in time (a restart that lost the last
writes, a restored snapshot, a failover to a lagging replica). The pool is then missing, or
`stale` (its Redis run id changed), and refuses every change. A rebuild:
1. fences the pool with a token of its own and a lease (a placeholder if it is missing);
2. names a new pool in PostgreSQL (takeover.py, under the deal row's lock, only while
   its fence is still its own): a write of the replaced pool still in flight commits before it,
   or is refused; then reads the deal, its forming groups and members, and what each buyer
   bought;
3. restores the pool from them: remaining = stock - sold - held, each buyer's places = bought +
   holds, the forming groups (due by their windows: one that closed meanwhile fails at the next
   sweep), and unfences it under the server's run id.
Every acknowledged start, join and leave is in PostgreSQL, so the rebuilt pool has all of them;
a full group whose orders were not written goes back to forming without its last member (that
join was never acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import asyncpg

from flash_sales.group_deals.pool import GroupPool
from flash_sales.group_deals.takeover import FenceLost, Taken, take_over

log = logging.getLogger("live.group_deals")

FENCE_LEASE_MS = 10_000
ATTEMPTS = 3


class PoolRebuild:
    def __init__(self, pg: asyncpg.Pool, pool: GroupPool) -> None:
        self.pg = pg
        self.pool = pool
        self._running: dict[int, asyncio.Task[bool]] = {}
        self.rebuilt = 0

    async def rebuild(self, sale_id: int) -> bool:
        """Whether the pool takes changes again (False: another process is at it, or it
        failed). One rebuild per sale runs in this process; callers share it."""
        task = self._running.get(sale_id)
        if task is None or task.done():
            task = asyncio.create_task(self._rebuild(sale_id), name=f"group-rebuild-{sale_id}")
            self._running[sale_id] = task
            task.add_done_callback(lambda done: self._forget(sale_id, done))
        return await asyncio.shield(task)

    def _forget(self, sale_id: int, task: asyncio.Task[bool]) -> None:
        if self._running.get(sale_id) is task:
            del self._running[sale_id]

    async def _rebuild(self, sale_id: int) -> bool:
        for _ in range(ATTEMPTS):
            token = secrets.token_hex(8)
            fenced = await self.pool.fence(sale_id, token, FENCE_LEASE_MS)
            if fenced != "fenced":
                return fenced == "ok"

            async def still_fenced(token: str = token) -> bool:
                return await self.pool.holds_fence(sale_id, token)

            try:
                taken = await take_over(self.pg, sale_id, token, still_fenced)
            except FenceLost:
                log.warning("group sale %s: rebuild outlived its fence; again", sale_id)
                continue
            if await self._restore(sale_id, token, taken) == "restored":
                self.rebuilt += 1
                log.warning(
                    "group sale %s: pool rebuilt from PostgreSQL (%d forming groups)",
                    sale_id,
                    len(taken.groups),
                )
                return True
        return False

    async def _restore(self, sale_id: int, token: str, taken: Taken) -> str:
        deal = taken.deal
        held = sum(len(g.members) for g in taken.groups)
        buyers = dict(taken.bought)
        for group in taken.groups:
            for member in group.members:
                buyers[member] = buyers.get(member, 0) + 1
        state = {
            "state": "open" if deal.live else "closed",
            "stock": str(deal.stock),
            "remaining": str(deal.stock - deal.sold - held),
            "held": str(held),
            "filling": "0",
            "sold": str(deal.sold),
            "size": str(deal.group_size),
            "window": str(deal.window_ms),
            "limit": str(deal.limit_per_buyer),
            "epoch": token,
        }
        return await self.pool.restore(sale_id, token, state, buyers, taken.groups)
