"""How a group's end is decided and carried out, shared by the calls of viewers and the sweep:
a full group's orders written (or the group failed) and the pool settled as PostgreSQL decided,
groups Redis failed recorded as failed, a deal's pool closed, and the sweep of one deal."""

from __future__ import annotations

import asyncio
import logging

from flash_sales.group_deals.announcements import GROUP_FAILED, GROUP_FORMED, GroupAnnouncer
from flash_sales.group_deals.model import Group, GroupDeal, GroupState
from flash_sales.group_deals.pool import GroupPool
from flash_sales.group_deals.rebuild import PoolRebuild
from flash_sales.group_deals.store import Failed, Formed, GroupStore, PoolReplaced
from rooms.errors import unavailable

log = logging.getLogger("live.group_deals")

SWEEP_GRACE_S = 2.0  # a group forming in PostgreSQL this long past its window is looked at
FENCED_WAITS = (0.02, 0.05, 0.1, 0.2)  # while another process rebuilds the pool


class Decider:
    def __init__(
        self,
        store: GroupStore,
        pool: GroupPool,
        rebuilder: PoolRebuild,
        announcer: GroupAnnouncer,
    ) -> None:
        self.store = store
        self.pool = pool
        self.rebuilder = rebuilder
        self.announcer = announcer

    async def form(self, deal: GroupDeal, epoch: str, group: Group) -> Group:
        """Write the full group's orders (or fail it) and settle the pool as decided."""
        try:
            result = await self.store.form(deal, epoch, group)
        except PoolReplaced as exc:
            raise unavailable("the sale was restored meanwhile; retry") from exc
        outcome = GroupState.FORMED if isinstance(result, Formed) else GroupState.FAILED
        settled = await self.pool.settle(deal.sale_id, group.id, outcome)
        if settled.code not in ("settled", "stale", "fenced", "unknown"):
            log.warning("group %s: settle answered %s", group.id, settled.code)
        decided = Group(
            group.id,
            group.sale_id,
            group.size,
            outcome,
            group.members,
            group.closes_at_ms,
            group.starter,
        )
        if result.fresh:
            event = GROUP_FORMED if outcome is GroupState.FORMED else GROUP_FAILED
            await self.announcer.group(deal, decided, event)
        if isinstance(result, Failed):
            log.warning("group %s failed when formed: %s", group.id, result.reason)
        return decided

    async def failed_in_redis(
        self, deal: GroupDeal, failed: list[tuple[int, tuple[str, ...]]]
    ) -> None:
        """Record as failed in PostgreSQL the groups Redis failed (id, members)."""
        if not failed:
            return
        members = dict(failed)
        for gid in await self.store.fail(list(members)):
            group = Group(
                gid, deal.sale_id, deal.group_size, GroupState.FAILED, members[gid], 0, ""
            )
            await self.announcer.group(deal, group, GROUP_FAILED)

    async def close(self, deal: GroupDeal) -> None:
        """Close the deal's pool: its forming groups fail. A pool being rebuilt is waited for
        (a bounded while), so the rebuild cannot restore it open after the deal ended."""
        for wait in (0.0, *FENCED_WAITS):
            await asyncio.sleep(wait)
            code, failed = await self.pool.close(deal.sale_id)
            if code == "stale":
                await self.rebuilder.rebuild(deal.sale_id)
                code, failed = await self.pool.close(deal.sale_id)
            await self.failed_in_redis(deal, failed)
            if code != "fenced":
                return
        log.warning("group sale %s: pool still fenced; its state refuses joins", deal.sale_id)

    async def sweep(self, deal: GroupDeal) -> None:
        """Fail the deal's groups whose window closed, finish formations a process left between
        Redis and PostgreSQL, and decide groups PostgreSQL still has forming past their window."""
        code, failed = await self.pool.expire_due(deal.sale_id)
        if code == "stale" or (code == "unknown" and deal.live):
            await self.rebuilder.rebuild(deal.sale_id)
            code, failed = await self.pool.expire_due(deal.sale_id)
        if code == "unknown":  # no pool (an ended deal's keys expired): no hold is left
            past = await self.store.forming_past(deal.sale_id, SWEEP_GRACE_S)
            await self.failed_in_redis(deal, [(gid, ()) for gid in past])
            return
        if code != "ok":
            return
        await self.failed_in_redis(deal, failed)
        figures = await self.pool.peek(deal.sale_id)
        if figures is None or figures.status != "ok":
            return
        if failed:  # their places went back to the stock
            await self.announcer.stock(deal, figures.remaining)
        for gid in figures.filling_ids:
            _, group = await self.pool.group(deal.sale_id, gid)
            if group is not None and group.state is GroupState.FILLING:
                await self.form(deal, figures.epoch, group)
        past = await self.store.forming_past(deal.sale_id, SWEEP_GRACE_S)
        for gid in past:
            _, group = await self.pool.group(deal.sale_id, gid)
            if group is None or group.state is GroupState.FAILED:
                await self.failed_in_redis(deal, [(gid, group.members if group else ())])
            elif group.state is GroupState.FILLING:
                await self.form(deal, figures.epoch, group)
