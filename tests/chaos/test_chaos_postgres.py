"""PostgreSQL faults during a flash sale: the sale row stalled past the confirm timeout, and
the service's connections cut."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from chaos_service import Chaos, run_under_fault
from chaos_workload import Plan, Workload

from live.db import application_name
from live.settings import Settings
from loadtest.faults import SaleRowStall, cut_connections

# Past the confirm timeout (IO_TIMEOUT_S) and past the age at which the recovery sweep settles a
# stuck confirm (3 x IO_TIMEOUT_S since its last attempt: a buyer still retrying keeps it
# alive) -- unless the sweep acts first.
STALL_MAX_S = 12.0


async def test_sale_row_stalled_past_the_confirm_timeout(
    settings: Settings, tmp_path: Path
) -> None:
    """The row stays locked until the recovery sweep rolls back a stuck confirm (the sale's
    `confirming` figure drops) or STALL_MAX_S; it is released right then, while the buyers'
    retried confirms of those holds are waiting on the lock: a retry and a sweep both act."""

    async def fault(chaos: Chaos, work: Workload) -> None:
        await work.acks_reached(10)
        s = chaos.settings
        stall = SaleRowStall(s.database_url, s.database_schema, work.sale_id, STALL_MAX_S)
        await asyncio.to_thread(stall.start)
        work.mark("sale row locked")
        until, peak = time.monotonic() + STALL_MAX_S, 0
        while time.monotonic() < until:
            figures = await work.figures()
            confirming = figures["confirming"] if figures else peak
            if confirming < peak:
                work.mark(f"sweep rolled back confirms ({peak} -> {confirming}): row released")
                break
            peak = confirming
            await asyncio.sleep(0.1)  # polling, bounded by STALL_MAX_S
        stall.release()
        await asyncio.to_thread(stall.join, 20)

    # Buyers go on past the stall: a greedy one may then take a hold the sweep gave back.
    plan = Plan(seed=4, storm_s=STALL_MAX_S + 5, patience_s=STALL_MAX_S + 8)
    problems = await run_under_fault(settings, tmp_path, plan, fault)
    assert not problems, "\n".join(problems)


async def test_postgres_connections_cut(settings: Settings, tmp_path: Path) -> None:
    async def fault(chaos: Chaos, work: Workload) -> None:
        await work.acks_reached(10)
        work.mark("service's PostgreSQL connections terminated, every 0.25 s for 2 s")
        s, cut = chaos.settings, 0
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            cut += await asyncio.to_thread(cut_connections, s.database_url, application_name(s))
            await asyncio.sleep(0.25)  # the rhythm of the fault, not a wait for anything
        assert cut > 0, "no connection of the service was found to cut"

    problems = await run_under_fault(settings, tmp_path, Plan(seed=5), fault)
    assert not problems, "\n".join(problems)
