"""A pool's waitlist: buyers who found it sold out queue for freed units (lua/wait.lua). The
queue is served inside the scripts that free a unit (`offer_freed` in lua/_prelude.lua): the
next waiter gets an `offered` hold of one unit, with its own expiry, which they confirm like a
held one; the ids of offers made wait in the pool's OFFERS list for `take_offers`, which hands
each to one caller to tell its buyer."""

from __future__ import annotations

from inventory_lock import codec
from inventory_lock.keys import MAX_BATCH, PoolKeys, valid_count, valid_pool, valid_text
from inventory_lock.results import HoldRecord, Waiting, WaitReason
from inventory_lock.scripts import Client, Scripts


class PoolWaitlists:
    """The waitlists of the pools an `InventoryLock` keeps (`InventoryLock.waitlists`)."""

    def __init__(self, redis: Client, scripts: Scripts, prefix: str) -> None:
        self._redis = redis
        self._scripts = scripts
        self._prefix = prefix

    def _keys(self, pool: str) -> PoolKeys:
        return PoolKeys.of(self._prefix, pool)

    async def join(self, pool: str, buyer: str, max_waiting: int) -> Waiting:
        """The buyer's place at the end of the queue; refused while stock is left, at the
        buyer's limit, with `max_waiting` buyers waiting, or for a buyer already waiting."""
        if not (valid_pool(pool) and valid_text(buyer) and valid_count(max_waiting)):
            return Waiting(False, 0, WaitReason.INVALID)
        keys = self._keys(pool)
        ok, reason, position = await self._scripts.call("wait", keys.all, [buyer, max_waiting])
        text = codec.text(reason)
        return Waiting(bool(ok), int(position), WaitReason(text) if text else None)

    async def leave(self, pool: str, buyer: str) -> bool:
        """False when the buyer was not waiting (an offer made to them stays theirs)."""
        if not (valid_pool(pool) and valid_text(buyer)):
            return False
        return bool(await self._redis.zrem(self._keys(pool).waiters, buyer))

    async def position(self, pool: str, buyer: str) -> int | None:
        """1 for the next in line; None when not waiting."""
        if not (valid_pool(pool) and valid_text(buyer)):
            return None
        rank = await self._redis.zrank(self._keys(pool).waiters, buyer)
        return None if rank is None else int(str(rank)) + 1

    async def take_offers(self, pool: str, limit: int = MAX_BATCH) -> list[HoldRecord]:
        """Offers made since the last take, each handed to one caller (at most once: one that
        is taken and then not told lapses to the next waiter); ended ones are left out."""
        if not valid_pool(pool) or not valid_count(limit, maximum=MAX_BATCH):
            return []
        reply = await self._scripts.call("take_offers", self._keys(pool).all, [limit])
        return [codec.record(hold_id, raw) for hold_id, raw in codec.pairs(reply)]
