"""Redis faults during a flash sale: restarted with its data, rolled back, flushed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chaos_service import Chaos, run_under_fault
from chaos_workload import Plan, Workload

from live.settings import Settings


async def test_redis_killed_and_restarted_with_its_data(settings: Settings, tmp_path: Path) -> None:
    async def fault(chaos: Chaos, work: Workload) -> None:
        await work.acks_reached(10)
        work.mark("redis SIGKILL, down 1 s, restart")
        await asyncio.to_thread(chaos.redis.restart, kill=True, down_s=1.0)

    problems = await run_under_fault(settings, tmp_path, Plan(seed=1), fault)
    assert not problems, "\n".join(problems)


async def test_redis_rolled_back_to_an_older_snapshot(settings: Settings, tmp_path: Path) -> None:
    async def fault(chaos: Chaos, work: Workload) -> None:
        await work.acks_reached(4)
        snapshot = await asyncio.to_thread(chaos.redis.snapshot)
        work.mark("snapshot")
        await work.acks_reached(16)
        work.mark("redis rolled back to the snapshot")
        await asyncio.to_thread(chaos.redis.rollback, snapshot)

    # More buyers than stock: a Redis that forgot sales offers stock PostgreSQL must refuse.
    problems = await run_under_fault(settings, tmp_path, Plan(stock=45, seed=2), fault)
    assert not problems, "\n".join(problems)


async def test_redis_flushed_with_a_limit_of_two(settings: Settings, tmp_path: Path) -> None:
    async def fault(chaos: Chaos, work: Workload) -> None:
        await work.acks_reached(10)
        work.mark("redis FLUSHALL")
        await asyncio.to_thread(chaos.redis.flush)

    plan = Plan(limit=2, qty_max=2, buyers=28, stock=60, seed=3)  # stock is left at the end
    problems = await run_under_fault(settings, tmp_path, plan, fault)
    assert not problems, "\n".join(problems)
