"""Group deals, assembled: a deal's life (made, opened, stopped), starting, joining and leaving
groups, and the sweep's loop; how a group's end is decided and carried out (a full group's
orders, groups failed, the sweep of one deal) is deciding.py's.

Every start, join and leave is decided by one Lua call (pool.py) and written to PostgreSQL
before it is acknowledged (store.py); a full group becomes its members' orders in one
PostgreSQL transaction (or fails, all of it), then the pool is settled as PostgreSQL decided.
A storage error answers `unavailable` (503, retry after): the change may or may not stand, and
a retry or the group's view says which.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from flash_sales.group_deals.announcements import (
    GROUP_FAILED,
    GROUP_PROGRESS,
    GROUP_STARTED,
    GroupAnnouncer,
)
from flash_sales.group_deals.deciding import FENCED_WAITS, Decider
from flash_sales.group_deals.model import Group, GroupDeal, GroupState, deal_config, identifier
from flash_sales.group_deals.pool import Answer, GroupPool
from flash_sales.group_deals.rebuild import PoolRebuild
from flash_sales.group_deals.store import GroupStore, PoolReplaced
from flash_sales.model import LIVE_STATES, SaleState
from flash_sales.store import SaleStore
from rooms.actors import Action, Actor, authorize
from rooms.errors import STORAGE_ERRORS, Conflict, Unavailable, invalid, not_found, unavailable
from rooms.log import RoomLog
from rooms.scripts import Client

log = logging.getLogger("live.group_deals")


_REFUSALS: dict[str, tuple[str, str]] = {
    "full": ("group_full", "the group is full"),
    "failed": ("group_failed", "the group failed: its window closed short"),
    "member": ("already_member", "you are in this group already"),
    "not_member": ("not_member", "you are not in this group"),
    "not_open": ("not_open", "the sale is not open"),
    "sold_out": ("sold_out", "no stock is left for another place"),
    "limit": ("limit", "you hold or bought as many as a buyer may"),
    "exists": ("conflict", "that start's group is another's; start again with a new key"),
}


def _refusal(code: str) -> Exception:
    if code == "unknown":
        return not_found("no such group")
    if code == "invalid":
        return invalid("a group id is a positive integer")
    if code in ("stale", "fenced"):
        return unavailable("the sale is being restored; retry")
    if code in _REFUSALS:
        error, detail = _REFUSALS[code]
        return Conflict(error, detail)
    return RuntimeError(f"unexpected answer {code!r} from the group pool")


class GroupDeals:
    def __init__(self, pg: asyncpg.Pool, client: Client, prefix: str, room_log: RoomLog) -> None:
        self.store = GroupStore(pg)
        self.sales = SaleStore(pg)
        self.pool = GroupPool(client, prefix)
        self.rebuilder = PoolRebuild(pg, self.pool)
        self.announcer = GroupAnnouncer(room_log)
        self.decider = Decider(self.store, self.pool, self.rebuilder, self.announcer)
        self._sale_of: dict[int, int] = {}  # group -> sale: never changes
        self._kinds: dict[int, bool] = {}  # sale -> a group deal or not: never changes

    # --- the deal -------------------------------------------------------------------------

    async def create(
        self,
        room: str,
        actor: Actor,
        product_id: object,
        *,
        price_cents: object,
        group_price_cents: object,
        stock: object,
        limit_per_buyer: object,
        group_size: object,
        group_window_s: object,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> dict[str, Any]:
        authorize(actor, room, Action.MANAGE_SALES)
        product = identifier("product_id", product_id)
        config = deal_config(
            price_cents=price_cents,
            group_price_cents=group_price_cents,
            stock=stock,
            limit_per_buyer=limit_per_buyer,
            group_size=group_size,
            group_window_s=group_window_s,
        )
        if starts_at and ends_at and ends_at <= starts_at:
            raise invalid("ends_at must be after starts_at")
        deal = await self.store.create(room, product, config, starts_at, ends_at)
        if deal is None:
            raise not_found(f"no product {product} in room {room!r}")
        return deal.view()

    async def is_group(self, sale_id: int) -> bool:
        """Whether the sale is a group deal: the sale routes (start, stop, figures, reserve)
        send such a sale here. False for no such sale."""
        known = self._kinds.get(sale_id)
        if known is None:
            kind = await self.store.kind(sale_id)
            if kind is None:
                return False
            known = self._kinds[sale_id] = kind == "group"
        return known

    async def deal(self, sale_id: object) -> GroupDeal:
        sale = identifier("sale", sale_id)
        deal = await self.store.deal(sale)
        if deal is None:
            raise not_found(f"no group sale {sale}")
        return deal

    async def start_sale(self, sale_id: object, actor: Actor) -> dict[str, Any]:
        deal = await self.deal(sale_id)
        authorize(actor, deal.room, Action.MANAGE_SALES)
        if deal.state is SaleState.ENDED:
            raise Conflict("ended", "the sale has ended")
        moved = await self.sales.move(deal.sale_id, (SaleState.SCHEDULED,), SaleState.OPEN)
        if moved is not None:  # nothing was held or sold yet: a fresh pool
            await self._open(deal)
            await self.announcer.sale(replace(deal, state=SaleState.OPEN), "sale_started")
        elif deal.live and await self.pool.peek(deal.sale_id) is None:
            # A start cut off before its pool opened, or a pool Redis lost: never a fresh pool
            # (it would put acknowledged places back on sale), always PostgreSQL's.
            await self.rebuilder.rebuild(deal.sale_id)
        return await self.figures(deal.sale_id, actor)

    async def _open(self, deal: GroupDeal) -> None:
        epoch = await self.store.name_pool(deal.sale_id, secrets.token_hex(8))
        await self.pool.open(
            deal.sale_id,
            deal.stock,
            deal.group_size,
            deal.window_ms,
            deal.limit_per_buyer,
            epoch,
            deal.sold,
        )

    async def stop_sale(self, sale_id: object, actor: Actor) -> dict[str, Any]:
        deal = await self.deal(sale_id)
        authorize(actor, deal.room, Action.MANAGE_SALES)
        await self._end(deal)
        return await self.figures(deal.sale_id, actor)

    async def _end(self, deal: GroupDeal) -> None:
        moved = await self.sales.move(
            deal.sale_id, (SaleState.SCHEDULED, *LIVE_STATES), SaleState.ENDED
        )
        await self.decider.close(deal)
        if moved is not None:
            await self.announcer.sale(replace(deal, state=SaleState.ENDED), "sale_ended")

    async def run_scheduler(self) -> None:
        """Open and end the deals whose times (`starts_at`, `ends_at`) have come."""
        for deal, target in await self.store.due():
            if target is SaleState.ENDED:
                await self._end(deal)
            elif await self.sales.move(deal.sale_id, (SaleState.SCHEDULED,), SaleState.OPEN):
                await self._open(deal)
                await self.announcer.sale(replace(deal, state=SaleState.OPEN), "sale_started")

    async def figures(self, sale_id: object, actor: Actor) -> dict[str, Any]:
        deal = await self.deal(sale_id)
        authorize(actor, deal.room, Action.READ_FIGURES)
        figures = await self.pool.peek(deal.sale_id)
        counted = await self.store.figures(deal.sale_id)
        live = figures is not None and figures.status == "ok"
        return {
            **deal.view(),
            "remaining": figures.remaining if live and figures else deal.stock - deal.sold,
            "held": figures.held if live and figures else 0,
            "filling": figures.filling if live and figures else 0,
            **counted,
        }

    # --- groups ---------------------------------------------------------------------------

    async def start_group(
        self, sale_id: object, actor: Actor, idempotency_key: str = ""
    ) -> dict[str, Any]:
        """Start a group of the sale and join it: the group's view. With an idempotency key
        (1-128 characters) a retried start answers the group the first one started."""
        deal = await self.deal(sale_id)
        authorize(actor, deal.room, Action.BUY)
        if len(idempotency_key) > 128:
            raise invalid("an Idempotency-Key has 1-128 characters")
        if not deal.live:
            raise _refusal("not_open")
        if idempotency_key:
            group_id, new = await self.store.start_id(deal.sale_id, actor.user, idempotency_key)
            if not new and await self.store.group(group_id) is not None:
                return await self.group(group_id, actor)  # that start stands: its group now
        else:
            group_id = await self.store.next_group_id()
        answer = await self._call(
            deal, lambda: self.pool.join(deal.sale_id, group_id, actor.user, start=True)
        )
        # `member`: this very start ran before (a retry with its key, or redis-py retried the
        # call): the id is this start's, so the group can only be this start's.
        if answer.code not in ("joined", "member") or answer.group is None:
            raise _refusal(answer.code)
        self._sale_of[group_id] = deal.sale_id
        decided = await self._record_join(deal, answer, actor.user)
        if decided is not None:
            return decided.view(actor.user)
        await self.announcer.group(deal, answer.group, GROUP_STARTED)
        await self.announcer.stock(deal, answer.remaining)
        return answer.group.view(actor.user)

    async def join(self, group_id: object, actor: Actor) -> dict[str, Any]:
        """Join a forming group: its view (`formed` when this join filled it)."""
        deal, gid = await self._deal_of_group(group_id)
        authorize(actor, deal.room, Action.BUY)
        if not deal.live:  # as PostgreSQL has it now, whatever a pool being rebuilt says
            raise _refusal("not_open")
        answer = await self._call(
            deal, lambda: self.pool.join(deal.sale_id, gid, actor.user, start=False)
        )
        if answer.code == "joined" and answer.group is not None:
            decided = await self._record_join(deal, answer, actor.user)
            if decided is not None:
                return decided.view(actor.user)
            await self.announcer.group(deal, answer.group, GROUP_PROGRESS)
            await self.announcer.stock(deal, answer.remaining)
            return answer.group.view(actor.user)
        if answer.code == "filled" and answer.group is not None:
            group = await self.decider.form(deal, answer.epoch, answer.group)
            return group.view(actor.user)
        if answer.code == "member" and answer.group is not None:
            if answer.group.state is GroupState.FORMING:  # a retry after a failed write
                await self._record_join(deal, answer, actor.user)
        if answer.code == "unknown":
            await self._refuse_from_record(gid)
        raise _refusal(answer.code)

    async def leave(self, group_id: object, actor: Actor) -> dict[str, Any]:
        """Leave a forming group (the hold goes back): its view."""
        deal, gid = await self._deal_of_group(group_id)
        authorize(actor, deal.room, Action.BUY)
        answer = await self._call(deal, lambda: self.pool.leave(deal.sale_id, gid, actor.user))
        group = answer.group
        if answer.code == "left" and group is not None:
            await self._record_leave(deal, answer, actor.user)
            if group.state is GroupState.FAILED:  # its last member left
                if await self.store.fail([gid]):
                    await self.announcer.group(deal, group, GROUP_FAILED)
            else:
                await self.announcer.group(deal, group, GROUP_PROGRESS)
            await self.announcer.stock(deal, answer.remaining)
            return group.view(actor.user)
        if answer.code == "not_member" and group is not None:
            # A leave whose write failed: Redis let them go, PostgreSQL still lists them.
            if await self._record_leave(deal, answer, actor.user):
                return group.view(actor.user)
        if answer.code == "unknown":
            await self._refuse_from_record(gid)
        raise _refusal(answer.code)

    async def group(self, group_id: object, actor: Actor | None = None) -> dict[str, Any]:
        """A group as it is now: live from Redis, else as PostgreSQL decided it."""
        deal, gid = await self._deal_of_group(group_id)
        viewer = actor.user if actor is not None else None
        figures, live = await self.pool.group(deal.sale_id, gid)
        if live is not None and figures is not None and figures.status == "ok":
            return live.view(viewer)
        recorded = await self.store.group(gid)
        if recorded is None:
            raise not_found(f"no group {gid}")
        return recorded.view(viewer)

    async def groups(self, sale_id: object) -> list[dict[str, Any]]:
        """The sale's forming groups with places left, soonest closing first."""
        deal = await self.deal(sale_id)
        figures = await self.pool.peek(deal.sale_id)
        if figures is None or figures.status != "ok" or figures.state != "open":
            return []
        now_ms = time.time() * 1000
        return [
            g.view()
            for g in figures.groups
            if g.state is GroupState.FORMING and g.places_left > 0 and g.closes_at_ms > now_ms
        ]

    # --- between Redis and PostgreSQL -------------------------------------------------------

    async def _call(self, deal: GroupDeal, call: Callable[[], Awaitable[Answer]]) -> Answer:
        """The script's answer, after a rebuild when the pool is stale (or missing while the
        deal is live); Unavailable while another process's rebuild holds it."""
        answer = await call()
        missing = answer.code in ("not_open", "unknown") and not answer.epoch
        if answer.code == "stale" or (missing and deal.live):
            await self.rebuilder.rebuild(deal.sale_id)
            answer = await call()
        for wait in FENCED_WAITS:
            if answer.code != "fenced":
                break
            await asyncio.sleep(wait)
            answer = await call()
        if answer.code in ("stale", "fenced"):
            raise _refusal(answer.code)
        return answer

    async def _record_join(self, deal: GroupDeal, answer: Answer, buyer: str) -> Group | None:
        """Write the join Redis made; None once written. When PostgreSQL decided the group
        before it (another join filled it and it formed, or it failed), its word stands: the
        group as decided if the buyer is one of its members (a formed group's orders include
        theirs), else the refusal it calls for."""
        assert answer.group is not None
        try:
            recorded = await self.store.record_join(answer.epoch, answer.group, buyer)
        except PoolReplaced as exc:
            raise unavailable("the sale was restored meanwhile; retry") from exc
        if recorded:
            return None
        decided = await self.store.group(answer.group.id)
        if decided is not None and buyer in decided.members:
            return decided
        await self._refuse_from_record(answer.group.id)
        return None

    async def _record_leave(self, deal: GroupDeal, answer: Answer, buyer: str) -> bool:
        assert answer.group is not None
        try:
            return await self.store.record_leave(answer.epoch, answer.group, buyer)
        except PoolReplaced as exc:
            raise unavailable("the sale was restored meanwhile; retry") from exc

    async def _deal_of_group(self, group_id: object) -> tuple[GroupDeal, int]:
        gid = identifier("group", group_id)
        sale_id = self._sale_of.get(gid)
        if sale_id is None:
            sale_id = await self.store.sale_of(gid)
            if sale_id is None:
                raise not_found(f"no group {gid}")
            self._sale_of[gid] = sale_id
        return await self.deal(sale_id), gid

    async def _refuse_from_record(self, gid: int) -> None:
        """Redis has no such group: PostgreSQL says how it ended."""
        recorded = await self.store.group(gid)
        if recorded is None:
            raise not_found(f"no group {gid}")
        if recorded.state is GroupState.FORMED:
            raise _refusal("full")
        if recorded.state is GroupState.FAILED:
            raise _refusal("failed")
        raise unavailable("the group is being restored; retry")

    # --- background -----------------------------------------------------------------------

    async def sweep(self) -> None:
        """Fail the groups whose window closed, finish formations a process left between Redis
        and PostgreSQL, decide groups PostgreSQL still has forming past their window, and
        rebuild stale pools. Every step is idempotent; processes may sweep at once."""
        for deal in await self.store.deals_to_sweep():
            try:
                await self.decider.sweep(deal)
            except STORAGE_ERRORS as exc:
                log.warning("group sale %s: sweep failed: %r", deal.sale_id, exc)
            except Unavailable:
                pass
            except Exception:  # one deal's bug must not stop the sweep of the others
                log.exception("group sale %s: sweep failed", deal.sale_id)

    def loops(self) -> list[tuple[str, float | None, Callable[[], Awaitable[None]]]]:
        return [
            ("group_deals.run_scheduler", 0.25, self.run_scheduler),
            ("group_deals.sweep", 0.25, self.sweep),
        ]
