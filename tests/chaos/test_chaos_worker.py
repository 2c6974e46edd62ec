"""A worker of `live serve --workers 2` killed with SIGKILL in the middle of confirms."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from chaos_service import Chaos, run_under_fault
from chaos_workload import Plan, Workload

from live.settings import Settings
from loadtest.processes import established_connections, kill, worker_pids


async def test_a_worker_killed_in_the_middle_of_confirms(
    settings: Settings, tmp_path: Path
) -> None:
    async def fault(chaos: Chaos, work: Workload) -> None:
        assert chaos.pid is not None
        for acks in (8, 24):  # twice: uvicorn replaces a dead worker
            await work.acks_reached(acks, within=30)
            workers = await _two_workers(chaos.pid)
            # The worker serving most of the buyers' connections, killed the moment confirms
            # are in flight: some of them are cut between Redis and PostgreSQL.
            served = {pid: established_connections(pid, chaos.port) for pid in workers}
            victim = max(served, key=lambda pid: served[pid])
            await work.in_flight_reached("confirm", 2)
            kill(victim)
            work.mark(
                f"worker SIGKILLed, {work.in_flight['confirm']} confirms in flight "
                f"(connections per worker: {sorted(served.values())})"
            )

    problems = await run_under_fault(
        settings, tmp_path, Plan(seed=6, storm_s=14.0), fault, workers=2
    )
    assert not problems, "\n".join(problems)


async def _two_workers(supervisor: int, within: float = 30.0) -> list[int]:
    """The two workers of `live serve` (waiting, bounded, for a replaced one to be there)."""
    deadline = time.monotonic() + within
    while len(workers := worker_pids(supervisor)) != 2:
        assert time.monotonic() < deadline, f"expected 2 workers of live serve, found {workers}"
        await asyncio.sleep(0.05)  # polling, bounded by the deadline
    return workers
