"""`InventoryLock`: the Python face of the Lua scripts, over redis-py asyncio.

Inputs are validated here and again in Lua; a bad input is a typed rejection and Redis is not
touched. Every script is replay-safe, so redis-py's retry after a lost reply is harmless.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any

from redis.typing import EncodableT

from inventory_lock import codec
from inventory_lock.check import check_dump
from inventory_lock.keys import (
    MAX_BATCH,
    MAX_RESERVE_BATCH,
    PoolKeys,
    check_prefix,
    hold_ms_of,
    pool_of,
    valid_count,
    valid_pool,
    valid_request,
    valid_text,
)
from inventory_lock.results import (
    Adopted,
    CheckReport,
    ExpiryResult,
    HoldRecord,
    OrderFact,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
    ReserveResult,
    Snapshot,
    StockChange,
    StockReason,
    StockResult,
    Transition,
    TransitionReason,
)
from inventory_lock.scripts import Call, Client, ScriptName, Scripts
from inventory_lock.waitlist import PoolWaitlists

DEFAULT_RECLAIM_BATCH = 100
DEFAULT_EXPIRE_BATCH = 1000
MAX_ADOPT_BATCH = 1000  # orders per adopt script call


def _valid_fact(pool: str, fact: OrderFact) -> bool:
    try:
        return pool_of(fact.hold_id) == pool and valid_text(fact.buyer) and valid_count(fact.qty)
    except ValueError:
        return False


class InventoryLock:
    """Pools of stock in Redis; each change to a pool is one atomic Lua call.

    `redis` is a `redis.asyncio.Redis` or `RedisCluster`, with or without decode_responses.
    Keys are `<prefix>{sale:<pool>}:<suffix>`, one hash tag (one cluster slot) per pool.
    """

    def __init__(
        self, redis: Client, prefix: str = "live:", reclaim_batch: int = DEFAULT_RECLAIM_BATCH
    ) -> None:
        if not valid_count(reclaim_batch, maximum=MAX_BATCH):
            raise ValueError(f"reclaim_batch must be 1..{MAX_BATCH}")
        self._redis = redis
        self._prefix = check_prefix(prefix)
        self._scripts = Scripts(redis)
        self._reclaim_batch = reclaim_batch
        self.waitlists = PoolWaitlists(redis, self._scripts, self._prefix)

    def keys(self, pool: str) -> PoolKeys:
        return PoolKeys.of(self._prefix, pool)

    # -- pools ---------------------------------------------------------------------------------

    async def load(
        self, pool: str, stock: int, limit_per_buyer: int, hold_seconds: float
    ) -> PoolChange:
        """A new pool with `stock` remaining; refused with `exists` while the pool exists."""
        hold_ms = hold_ms_of(hold_seconds)
        if not (
            valid_pool(pool)
            and valid_count(stock, minimum=0)
            and valid_count(limit_per_buyer)
            and hold_ms is not None
        ):
            return PoolChange(pool, False, PoolReason.INVALID)
        reply = await self._call("load", pool, [pool, stock, limit_per_buyer, hold_ms])
        return codec.pool_change_reply(pool, reply)

    # -- repair from the system of record -----------------------------------------------------
    # fence, adopt every order, unfence: a pool that Redis lost or took back in time (a restart,
    # a restored snapshot, a failover) sells again only once it holds every order as confirmed.

    async def fence(
        self,
        pool: str,
        stock: int,
        limit_per_buyer: int,
        hold_seconds: float,
        token: str,
        lease_s: float,
    ) -> PoolChange:
        """Stop the pool selling until `unfence(pool, token)`, for at most `lease_s` (then it is
        stale again, for another repair); a missing pool is created with all of `stock`
        remaining (reason `created`), for `adopt` to take what was sold."""
        hold_ms, lease_ms = hold_ms_of(hold_seconds), hold_ms_of(lease_s)
        if not (
            valid_pool(pool)
            and valid_count(stock, minimum=0)
            and valid_count(limit_per_buyer)
            and hold_ms is not None
            and lease_ms is not None
            and valid_text(token)
        ):
            return PoolChange(pool, False, PoolReason.INVALID)
        args: list[EncodableT] = [pool, stock, limit_per_buyer, hold_ms, token, lease_ms]
        return codec.pool_change_reply(pool, await self._call("fence", pool, args))

    async def fenced_by(self, pool: str, token: str) -> bool:
        """Whether the pool's fence is still the one `fence(pool, ..., token, ...)` set (of this
        Redis run or an earlier one): no other repair has fenced it since, none unfenced it."""
        if not valid_pool(pool):
            return False
        fence = await self._redis.hget(self.keys(pool).meta, "fenced")
        return fence is not None and codec.text(fence).endswith(f":{token}")

    async def adopt(self, pool: str, orders: Sequence[OrderFact]) -> Adopted | PoolChange:
        """Record each order as a confirmed hold, whatever state Redis has it in (see
        lua/adopt.lua); idempotent. A failed PoolChange for an unknown pool or bad input."""
        valid = valid_pool(pool) and all(_valid_fact(pool, fact) for fact in orders)
        unique = list(dict.fromkeys(orders))  # the same order twice is adopted once
        if not valid or len({fact.hold_id for fact in unique}) < len(unique):  # id, two orders
            return PoolChange(pool, False, PoolReason.INVALID)
        result: Adopted | PoolChange = Adopted(pool, 0, 0, 0, 0)
        for start in range(0, max(len(unique), 1), MAX_ADOPT_BATCH):
            chunk = unique[start : start + MAX_ADOPT_BATCH]
            args: list[EncodableT] = [pool]
            args += [x for fact in chunk for x in (fact.hold_id, fact.buyer, fact.qty)]
            reply = codec.adopted_reply(pool, await self._call("adopt", pool, args))
            if isinstance(reply, PoolChange):
                return reply
            assert isinstance(result, Adopted)
            result = Adopted(
                pool,
                result.holds + reply.holds,
                result.qty + reply.qty,
                result.mismatches + reply.mismatches,
                reply.remaining,
            )
        return result

    async def unfence(self, pool: str, token: str, stock: int | None = None) -> PoolChange:
        """The pool sells again, with `stock` (the system of record's) when given; `stale` if
        another repair fenced it since, or Redis restarted since this `fence` (repair again)."""
        if not valid_pool(pool) or not valid_text(token):
            return PoolChange(pool, False, PoolReason.INVALID)
        args: list[EncodableT] = [token]
        if stock is not None:
            if not valid_count(stock, minimum=0):
                return PoolChange(pool, False, PoolReason.INVALID)
            args.append(stock)
        return codec.pool_change_reply(pool, await self._call("unfence", pool, args))

    async def exists(self, pool: str) -> bool:
        return valid_pool(pool) and bool(await self._redis.exists(self.keys(pool).meta))

    async def close(self, pool: str) -> PoolChange:
        """No more reserves; existing holds may still be confirmed, cancelled or expire."""
        if not valid_pool(pool):
            return PoolChange(pool, False, PoolReason.INVALID)
        return codec.pool_change_reply(pool, await self._call("close", pool, []))

    async def drop(self, pool: str) -> PoolChange:
        """Unlinks the pool's keys (one command: they share a slot)."""
        if not valid_pool(pool):
            return PoolChange(pool, False, PoolReason.INVALID)
        deleted = await self._redis.unlink(*self.keys(pool).all)
        if not deleted:
            return PoolChange(pool, False, PoolReason.UNKNOWN_POOL)
        return PoolChange(pool, True)

    async def snapshot(self, pool: str) -> Snapshot | None:
        if not valid_pool(pool):
            return None
        return codec.snapshot_reply(pool, await self._call("snapshot", pool, []))

    async def check(self, pool: str) -> CheckReport | None:
        """Verifies the invariants by recomputing every count from the hold records."""
        if not valid_pool(pool):
            return None
        return check_dump(pool, await self._call("dump", pool, []))

    # -- reservations --------------------------------------------------------------------------

    async def reserve(self, pool: str, buyer: str, qty: int, idempotency_key: str) -> ReserveResult:
        """A hold of `qty`, or the same hold again for a known (buyer, idempotency key)."""
        return (await self.reserve_many([ReserveRequest(pool, buyer, qty, idempotency_key)]))[0]

    async def reserve_many(self, requests: Sequence[ReserveRequest]) -> list[ReserveResult]:
        """Each request answered as `reserve` would, one after another in request order.

        The requests of one pool go in one script call (one per MAX_RESERVE_BATCH of them);
        calls for several pools go in one pipeline. Results come back in request order.
        """
        results: list[ReserveResult] = [Rejection(RejectReason.INVALID)] * len(requests)
        by_pool: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if valid_request(request):
                by_pool.setdefault(request.pool, []).append(i)
        chunks = [
            (pool, indexes[start : start + MAX_RESERVE_BATCH])
            for pool, indexes in by_pool.items()
            for start in range(0, len(indexes), MAX_RESERVE_BATCH)
        ]
        if len(chunks) == 1:
            pool, chunk = chunks[0]
            answers = [await self.reserve_batch(pool, [requests[i] for i in chunk])]
        else:
            calls = [
                self._reserve_call(pool, [requests[i] for i in chunk]) for pool, chunk in chunks
            ]
            replies = await self._scripts.call_many("reserve", calls) if calls else []
            answers = [
                codec.reserve_replies(pool, reply, len(chunk))
                for (pool, chunk), reply in zip(chunks, replies, strict=True)
            ]
        for (_, chunk), chunk_answers in zip(chunks, answers, strict=True):
            for i, answer in zip(chunk, chunk_answers, strict=True):
                results[i] = answer
        return results

    async def reserve_batch(
        self, pool: str, requests: Sequence[ReserveRequest]
    ) -> list[ReserveResult]:
        """One script call for up to MAX_RESERVE_BATCH requests of `pool` that passed
        `valid_request` (ReserveBatcher checks them as they arrive; Lua checks them again)."""
        if not 1 <= len(requests) <= MAX_RESERVE_BATCH or any(r.pool != pool for r in requests):
            raise ValueError(f"1..{MAX_RESERVE_BATCH} requests of pool {pool!r} expected")
        reply = await self._scripts.call("reserve", *self._reserve_call(pool, requests))
        return codec.reserve_replies(pool, reply, len(requests))

    async def begin_confirm(self, hold_id: str) -> Transition:
        """held or offered -> confirming, only while the hold has not expired by server time."""
        return await self._transition("begin_confirm", hold_id, [])

    async def finish_confirm(self, hold_id: str) -> Transition:
        """confirming -> confirmed."""
        return await self._transition("finish_confirm", hold_id, [])

    async def abort_confirm(self, hold_id: str, release: bool) -> Transition:
        """confirming -> held (original expiry), or back to stock when `release`."""
        return await self._transition("abort_confirm", hold_id, [1 if release else 0])

    async def cancel(self, hold_id: str) -> Transition:
        """held or offered -> released (an already due hold expires instead)."""
        return await self._transition("cancel", hold_id, [])

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        try:
            pool = pool_of(hold_id)
        except ValueError:
            return None
        raw = await self._redis.hget(self.keys(pool).holds, hold_id)
        return codec.record(hold_id, raw) if raw is not None else None

    async def confirming_holds(self, pool: str, limit: int = 1000) -> list[HoldRecord]:
        """Holds stuck between Redis and PostgreSQL, oldest first, for a recovery sweep."""
        if not valid_pool(pool) or not valid_count(limit, maximum=MAX_BATCH):
            return []
        reply = await self._call("confirming", pool, [limit])
        return [codec.record(hold_id, raw) for hold_id, raw in codec.pairs(reply)]

    # -- stock changes -------------------------------------------------------------------------
    # adjust_stock, the system of record decides, settle_stock: see lua/adjust_stock.lua.

    async def adjust_stock(self, pool: str, request_id: str, delta: int) -> StockResult:
        """Begin a change of the pool's stock by `delta`, keyed by `request_id`: a decrease
        takes its units out of `remaining` now (refused with `too_low` when they are held or
        sold), an increase waits for `settle_stock`. A replay answers as the first call."""
        if not (
            valid_pool(pool)
            and valid_text(request_id)
            and not isinstance(delta, bool)
            and valid_count(abs(delta))
        ):
            return StockResult(False, reason=StockReason.INVALID)
        return codec.stock_reply(await self._call("adjust_stock", pool, [request_id, delta]))

    async def settle_stock(self, pool: str, request_id: str, applied: bool) -> StockResult:
        """End a begun change as the system of record decided: `applied`, or void (a decrease
        gives its units back). Replay-safe."""
        if not valid_pool(pool) or not valid_text(request_id):
            return StockResult(False, reason=StockReason.INVALID)
        args: list[EncodableT] = [request_id, "applied" if applied else "void"]
        return codec.stock_reply(await self._call("settle_stock", pool, args))

    async def stock_changes(self, pool: str) -> list[StockChange]:
        """Every stock change the pool records (one per request id), for sweeps and repairs."""
        if not valid_pool(pool):
            return []
        raw = await self._redis.hgetall(self.keys(pool).changes)
        return [codec.stock_change(codec.text(k), v) for k, v in raw.items()]

    # -- expiry --------------------------------------------------------------------------------

    async def expire_due(self, pool: str, batch: int = DEFAULT_EXPIRE_BATCH) -> ExpiryResult | None:
        """Returns up to `batch` due holds to stock; None for an unknown pool. Idempotent."""
        if not valid_count(batch, maximum=MAX_BATCH):
            raise ValueError(f"batch must be 1..{MAX_BATCH}")
        if not valid_pool(pool):
            return None
        return codec.expiry_reply(pool, await self._call("expire_due", pool, [batch]))

    async def expire_due_many(
        self, pools: Sequence[str], batch: int = DEFAULT_EXPIRE_BATCH
    ) -> list[ExpiryResult]:
        """`expire_due` on each of `pools` (unknown ones are skipped); safe to run in every
        process at once. The caller knows its pools (flash_sales: from PostgreSQL): the engine
        keeps no list of them, which on a cluster would be one key on one shard."""
        results = await asyncio.gather(*(self.expire_due(pool, batch) for pool in pools))
        return [result for result in results if result is not None]

    async def server_ms(self) -> int:
        """The Redis server's clock in ms: the clock holds are stamped and expire by."""
        reply: Any = await self._redis.time()
        if isinstance(reply, dict):  # a cluster answers per node: any node's clock will do
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    # -- helpers -------------------------------------------------------------------------------

    async def _call(self, name: ScriptName, pool: str, args: Sequence[EncodableT]) -> Any:
        return await self._scripts.call(name, self.keys(pool).all, args)

    async def _transition(self, name: ScriptName, hold_id: str, args: list[int]) -> Transition:
        try:
            pool = pool_of(hold_id)
        except ValueError:
            return Transition(str(hold_id), False, TransitionReason.INVALID, None)
        reply = await self._scripts.call(name, self.keys(pool).all, [hold_id, *args])
        return codec.transition_reply(hold_id, reply)

    def _reserve_call(self, pool: str, requests: Sequence[ReserveRequest]) -> Call:
        """One lua/reserve.lua call for requests of `pool`; bytes, which redis-py sends as they
        are (a call carries three arguments per request). The nonce makes this call's hold ids
        unique even if Redis later forgets it and hands out the same sequence numbers again."""
        args: list[EncodableT] = [pool, self._reclaim_batch, secrets.token_hex(8)]
        for request in requests:
            args += (request.buyer.encode(), b"%d" % request.qty, request.idempotency_key.encode())
        return self.keys(pool).all, args
