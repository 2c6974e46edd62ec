"""Flash sales through the faults that used to lose or swap orders: stalled confirms racing the
recovery sweep, orders under a reused id, repairs racing confirms and stops, a lost registry,
Redis behind PostgreSQL. Real Redis and PostgreSQL; the faults are made by hand here (the chaos
tests in tests/chaos make them with real server restarts and rollbacks)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sale_kit import (
    ROOM,
    auth,
    client,
    confirm,
    figures,
    locked_sale_row,
    open_sale,
    reserve,
    until_waiting_on_locks,
    write_order,
)
from serve_kit import Served, serve_app

from flash_sales import metrics
from flash_sales.model import OrderRequest, Outcome, SaleState
from flash_sales.orders import Voided
from inventory_lock import HoldState
from live.embedded import EmbeddedPostgres
from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name


@pytest.fixture
async def quick(settings: Settings) -> AsyncIterator[tuple[Served, httpx.AsyncClient, Settings]]:
    """The app with a 1 s I/O timeout: a confirm stuck behind a lock gives up within 2 s."""
    own = dataclasses.replace(settings, io_timeout_s=1.0)
    async with (
        serve_app(own) as running,
        httpx.AsyncClient(base_url=running.url, timeout=30) as http,
    ):
        yield running, http, own


async def _hold(http: httpx.AsyncClient, settings: Settings, sale_id: int, buyer: str) -> str:
    held = await reserve(http, settings, sale_id, buyer)
    assert held.status_code == 201, held.text
    hold_id: str = held.json()["id"]
    return hold_id


async def _consistent(served: Served, sale_id: int) -> None:
    """Redis agrees with itself and with PostgreSQL's orders."""
    sales = served.services.sales
    report = await sales.lock.check(str(sale_id))
    assert report is not None and report.ok, report
    sale = await sales.store.get(sale_id)
    assert sale is not None and report.confirmed + report.confirming >= sale.sold
    assert report.confirmed <= sale.sold


async def test_interrupted_confirm_is_recovered(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=3)
    sales = served.services.sales
    holds = [(await reserve(client, settings, sale["id"], f"b{n}")).json()["id"] for n in range(2)]
    # A worker died after begin_confirm: once with the order written, once without.
    for hold in holds:
        assert (await sales.lock.begin_confirm(hold)).ok
    # (with the payment the buyer's retry below carries: one with another is not a retry)
    await sales.writer.write(OrderRequest(holds[0], sale["id"], "b0", 1, 500, 1, "pay-b0"))
    sales.maintenance.stuck_confirm_ms = 0
    await sales.maintenance.check_pools()  # the sweeps walk the pools it read from PostgreSQL
    await sales.maintenance.recover_confirms()
    first, second = [await sales.lock.get_hold(h) for h in holds]
    assert first is not None and first.state.value == "confirmed"
    assert second is not None and second.state.value == "released"  # voided in PostgreSQL
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["orders"], numbers["confirming"]) == (1, 1, 0)
    report = await sales.lock.check(str(sale["id"]))
    assert report is not None and report.ok and report.confirmed == 1
    late = await confirm(client, settings, holds[1], "b1")  # the caller that gave up, retrying
    assert (late.status_code, late.json()["error"]) == (409, "expired")
    assert (await confirm(client, settings, holds[0], "b0")).status_code == 201


async def test_a_voided_hold_never_becomes_an_order(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """The sweep's void and a late write of the same confirm race in PostgreSQL: whichever
    claims the hold first stands, and the other learns it."""
    sale = await open_sale(client, settings, stock=2)
    sales = served.services.sales
    hold = (await reserve(client, settings, sale["id"], "ann")).json()["id"]
    assert (await sales.lock.begin_confirm(hold)).ok
    assert await sales.store.decide_void(hold, sale["id"]) is Outcome.VOID
    request = OrderRequest(hold, sale["id"], "ann", 1, 500, 1, "pay")
    assert isinstance(await sales.writer.write(request), Voided)
    assert await sales.store.order(hold) is None
    answer = await confirm(client, settings, hold, "ann")
    assert (answer.status_code, answer.json()["error"]) == (409, "expired")
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["held"], numbers["confirming"], numbers["remaining"]) == (
        0,
        0,
        0,
        2,
    )


async def test_redis_losing_the_sale_rebuilds_from_postgres(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=5)
    for n in range(3):
        held = await reserve(client, settings, sale["id"], f"b{n}")
        assert (await confirm(client, settings, held.json()["id"], f"b{n}")).status_code == 201
    lock = served.services.sales.lock
    redis = served.services.redis
    await redis.delete(*lock.keys(str(sale["id"])).all)  # this test's namespace only
    repeat = await reserve(client, settings, sale["id"], "b0", key="second-try")
    assert repeat.json()["error"] == "limit"  # b0's confirmed item survived the rebuild
    results = [await reserve(client, settings, sale["id"], f"c{n}") for n in range(5)]
    assert [r.status_code for r in results].count(201) == 2
    for n, result in enumerate(results):
        if result.status_code == 201:
            assert (
                await confirm(client, settings, result.json()["id"], f"c{n}")
            ).status_code == 201
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["orders"], numbers["remaining"]) == (5, 5, 0)


async def test_postgres_down_then_back(tmp_path: Path, settings: Settings) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg")
    postgres.start()
    try:
        own = dataclasses.replace(
            settings, database_url=postgres.url, database_schema="public", io_timeout_s=2
        )
        async with (
            serve_app(own) as running,
            httpx.AsyncClient(base_url=running.url, timeout=30) as http,
        ):
            sale = await open_sale(http, own, stock=2)
            held = await reserve(http, own, sale["id"], "ann")
            await asyncio.to_thread(postgres.stop)
            down = await confirm(http, own, held.json()["id"], "ann")
            assert down.status_code == 503
            assert down.json()["error"] == "unavailable"
            assert "retry-after" in down.headers
            await asyncio.to_thread(postgres.start)
            orders = set()
            for _ in range(20):
                again = await confirm(http, own, held.json()["id"], "ann")
                if again.status_code == 201:
                    orders.add(again.json()["id"])
                    if (
                        len(orders)
                        and (await confirm(http, own, held.json()["id"], "ann")).status_code == 201
                    ):
                        break
                await asyncio.sleep(0.5)
            assert len(orders) == 1
            conn = await asyncpg.connect(postgres.url)
            try:
                assert await conn.fetchval("SELECT count(*) FROM orders") == 1
                assert await conn.fetchval("SELECT sold FROM sales") == 1
            finally:
                await conn.close()
    finally:
        postgres.stop()


async def test_a_stalled_confirm_retried_while_the_sweep_runs_ends_as_one_order(
    quick: tuple[Served, httpx.AsyncClient, Settings],
) -> None:
    """The retry's order and the sweep's rollback race for the hold in PostgreSQL: the retry
    claimed it first, so the sweep finds the order and confirms the hold in Redis too."""
    served, http, settings = quick
    sales = served.services.sales
    sale = await open_sale(http, settings, stock=3, limit=1)
    hold = await _hold(http, settings, sale["id"], "ann")
    sales.maintenance.stuck_confirm_ms = 0
    await sales.maintenance.check_pools()  # the sweeps walk the pools it read from PostgreSQL
    async with locked_sale_row(settings, sale["id"]):
        retry = asyncio.create_task(confirm(http, settings, hold, "ann"))
        await until_waiting_on_locks(settings, 1)  # the order is claimed, waiting for the row
        sweep = asyncio.create_task(sales.maintenance.recover_confirms())
        await until_waiting_on_locks(settings, 2)  # the sweep waits for that claim
    answer = await retry
    await sweep
    assert answer.status_code == 201, answer.text
    assert (await sales.lock.get_hold(hold)).state is HoldState.CONFIRMED  # type: ignore[union-attr]
    cancel = await http.delete(f"/api/reservations/{hold}", headers=auth(settings, "ann"))
    assert (cancel.status_code, cancel.json()["error"]) == (409, "confirmed")
    again = await reserve(http, settings, sale["id"], "ann", key="again")
    assert again.json()["error"] == "limit"
    numbers = await figures(http, settings, sale["id"])
    assert (numbers["sold"], numbers["orders"], numbers["remaining"]) == (1, 1, 2)
    await _consistent(served, sale["id"])


async def test_a_stalled_confirm_swept_up_is_never_written_later(
    quick: tuple[Served, httpx.AsyncClient, Settings],
) -> None:
    """The confirm gave up (503); the sweep voids its hold; the retry then learns it is over,
    and nothing is sold."""
    served, http, settings = quick
    sales = served.services.sales
    sale = await open_sale(http, settings, stock=2, limit=1)
    hold = await _hold(http, settings, sale["id"], "ann")
    sales.maintenance.stuck_confirm_ms = 0
    await sales.maintenance.check_pools()  # the sweeps walk the pools it read from PostgreSQL
    async with locked_sale_row(settings, sale["id"]):
        stalled = await confirm(http, settings, hold, "ann")
        assert stalled.status_code == 503 and "retry-after" in stalled.headers
        await sales.maintenance.recover_confirms()
        retry = await confirm(http, settings, hold, "ann")
    assert (retry.status_code, retry.json()["error"]) == (409, "expired")
    assert await sales.store.outcome(hold) is Outcome.VOID
    numbers = await figures(http, settings, sale["id"])
    assert (numbers["sold"], numbers["held"], numbers["confirming"], numbers["remaining"]) == (
        0,
        0,
        0,
        2,
    )
    fresh = await reserve(http, settings, sale["id"], "ann", key="fresh")
    assert (await confirm(http, settings, fresh.json()["id"], "ann")).status_code == 201
    await _consistent(served, sale["id"])


async def test_a_confirm_never_answers_with_another_buyers_order(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """An order already under this reservation id (an id Redis reissued before ids had
    nonces) is not this buyer's: 409 conflict, counted, and Redis counts the order it is."""
    sale = await open_sale(client, settings, stock=3, limit=1)
    hold = await _hold(client, settings, sale["id"], "ann")
    await write_order(settings, sale["id"], hold, "mallory")
    before = metrics.ORDER_MISMATCHES._value.get()
    answer = await confirm(client, settings, hold, "ann")
    assert (answer.status_code, answer.json()["error"]) == (409, "conflict")
    assert "secret" not in answer.text
    assert metrics.ORDER_MISMATCHES._value.get() == before + 1
    record = await served.services.sales.lock.get_hold(hold)
    assert record is not None and (record.buyer, record.state) == ("mallory", HoldState.CONFIRMED)
    await _consistent(served, sale["id"])


async def test_a_repair_does_not_miss_a_confirm_committed_during_it(
    quick: tuple[Served, httpx.AsyncClient, Settings],
) -> None:
    """Redis loses the pool while a confirm waits in PostgreSQL; the pool is rebuilt before
    that order commits. The confirm then adopts its order: the limit holds, nothing is lost."""
    served, http, settings = quick
    sales = served.services.sales
    sale = await open_sale(http, settings, stock=3, limit=1)
    hold = await _hold(http, settings, sale["id"], "ann")
    async with locked_sale_row(settings, sale["id"]):
        confirming = asyncio.create_task(confirm(http, settings, hold, "ann"))
        await until_waiting_on_locks(settings, 1)
        await served.services.redis.delete(*sales.lock.keys(str(sale["id"])).all)
        current = await sales.store.get(sale["id"])
        assert current is not None and await sales.repair.repair(current, "missing")
    assert (await confirming).status_code == 201
    again = await reserve(http, settings, sale["id"], "ann", key="again")
    assert again.json()["error"] == "limit"
    numbers = await figures(http, settings, sale["id"])
    assert (numbers["sold"], numbers["remaining"]) == (1, 2)
    await _consistent(served, sale["id"])


async def test_a_buyer_above_the_limit_is_loaded_as_is_and_the_sale_sells(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=5, limit=1)
    for n in range(2):  # two orders of one buyer, written before PostgreSQL guarded the limit
        await write_order(settings, sale["id"], f"{sale['id']}.{n + 1}", "ann", outcome=False)
    sales = served.services.sales
    await served.services.redis.delete(*sales.lock.keys(str(sale["id"])).all)
    before = metrics.BUYERS_OVER_LIMIT._value.get()
    bob = await reserve(client, settings, sale["id"], "bob")
    assert bob.status_code == 201, bob.text
    assert metrics.BUYERS_OVER_LIMIT._value.get() == before + 1
    assert (await reserve(client, settings, sale["id"], "ann", key="more")).json()["error"] == (
        "limit"
    )
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["held"], numbers["remaining"]) == (2, 1, 2)


async def test_a_repair_racing_a_stop_never_reopens_the_sale(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sales = served.services.sales
    host = auth(settings, "host", Role.HOST)
    for _ in range(5):
        sale = await open_sale(client, settings, stock=3)
        await served.services.redis.delete(*sales.lock.keys(str(sale["id"])).all)
        current = await sales.store.get(sale["id"])
        assert current is not None
        await asyncio.gather(
            sales.repair.repair(current, "missing"),
            client.post(f"/api/sales/{sale['id']}/stop", headers=host),
        )
        late = await reserve(client, settings, sale["id"], "ann", key=f"late-{sale['id']}")
        assert late.json()["error"] == "not_open"
        snap = await sales.lock.snapshot(str(sale["id"]))
        assert snap is None or snap.closed


async def test_the_sweeps_walk_postgres_list_and_stuck_confirms_are_recovered(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """No registry in Redis: the pools swept are PostgreSQL's live (and recently ended) sales,
    as check_pools read them, whatever Redis lost."""
    sales = served.services.sales
    sale = await open_sale(client, settings, stock=2)
    hold = await _hold(client, settings, sale["id"], "ann")
    assert (await sales.lock.begin_confirm(hold)).ok  # and then its process died
    sales.maintenance.pools = []
    await sales.maintenance.check_pools()
    assert sales.maintenance.pools == [str(sale["id"])]
    sales.maintenance.stuck_confirm_ms = 0
    await sales.maintenance.recover_confirms()
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["confirming"], numbers["held"], numbers["remaining"]) == (0, 0, 2)


async def test_redis_behind_postgres_is_repaired(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """An order PostgreSQL has and Redis never heard of (Redis went back in time): the pool
    check finds Redis behind and adopts it, so the stock and the buyer's limit hold."""
    sale = await open_sale(client, settings, stock=3, limit=1)
    await write_order(settings, sale["id"], f"{sale['id']}.7", "ann")
    before = metrics.POOL_REPAIRS.labels("behind")._value.get()
    await served.services.sales.maintenance.check_pools()
    assert metrics.POOL_REPAIRS.labels("behind")._value.get() == before + 1
    assert (await reserve(client, settings, sale["id"], "ann")).json()["error"] == "limit"
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["remaining"]) == (1, 2)
    await _consistent(served, sale["id"])


async def test_a_stop_between_a_start_and_its_load_leaves_the_sale_closed(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """A start moved the sale to open; a stop ended it before the start loaded the pool (the
    stop's close found no pool). The load must not leave an ended sale selling."""
    sale = await open_sale(client, settings, stock=3)
    sales = served.services.sales
    await served.services.redis.delete(*sales.lock.keys(str(sale["id"])).all)
    host = auth(settings, "host", Role.HOST)
    assert (await client.post(f"/api/sales/{sale['id']}/stop", headers=host)).status_code == 200
    ended = await sales.store.get(sale["id"])
    assert ended is not None
    await sales.lifecycle._open(ended)  # the start's late half
    snap = await sales.lock.snapshot(str(sale["id"]))
    assert snap is not None and snap.closed
    late = await reserve(client, settings, sale["id"], "ann", key="late")
    assert late.json()["error"] == "not_open"


async def test_an_end_whose_close_failed_is_finished_by_the_pool_check(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=3)
    sales = served.services.sales
    # Ended in PostgreSQL, and then Redis failed the close: the pool still sells.
    assert await sales.store.move(sale["id"], (SaleState.OPEN,), SaleState.ENDED) is not None
    assert (await reserve(client, settings, sale["id"], "ann")).status_code == 201
    await sales.maintenance.check_pools()
    late = await reserve(client, settings, sale["id"], "bob")
    assert late.json()["error"] == "not_open"
    log = served.services.rooms.log
    replay = await log.read_since(ROOM, (await log.position(ROOM))[0], 0, 1000)
    assert "sale_ended" in [json.loads(raw)["type"] for raw in replay.events]
