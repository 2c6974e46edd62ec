"""A repair whose store fails after it fenced the pool: tried again at once, and, when every
attempt failed, again by the pool check, so that the pool never stays fenced (nothing sells)
until its lease ends. The fault is the one redis-py raises when Redis drops the connection,
injected into the real lock's `unfence` of the served app; everything else is real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sale_kit import client, confirm, figures, open_sale, reserve
from serve_kit import Served

from flash_sales import repair as repair_module
from flash_sales.model import Sale
from flash_sales.service import SaleService
from live.settings import Settings

__all__ = ["client"]  # the fixture, used by name


@contextmanager
def unfence_fails(sales: SaleService, times: int) -> Iterator[list[int]]:
    """The lock's next `times` unfences fail as a dropped connection would (after Redis ran
    nothing); yields the list of calls made, failed or not."""
    lock = sales.lock
    real: Callable[..., Awaitable[Any]] = lock.unfence
    calls: list[int] = []

    async def unfence(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise RedisConnectionError("Connection closed by server.")
        return await real(*args, **kwargs)

    lock.unfence = unfence  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del lock.unfence  # the instance attribute goes: the class's method again


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repair_module, "RETRY_PAUSE_S", 0.01)


async def no_repair(sale: Sale) -> bool:
    return False


async def _pool_gone(served: Served, sale_id: int) -> None:
    lock = served.services.sales.lock
    await served.services.redis.delete(*lock.keys(str(sale_id)).all)  # this test's namespace


async def test_an_interrupted_repair_is_done_again_at_once(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=3, limit=1)
    held = await reserve(client, settings, sale["id"], "ann")
    assert (await confirm(client, settings, held.json()["id"], "ann")).status_code == 201
    await _pool_gone(served, sale["id"])
    with unfence_fails(served.services.sales, times=1) as calls:
        bob = await reserve(client, settings, sale["id"], "bob")
    assert bob.status_code == 201, bob.text
    assert len(calls) == 2
    assert (await reserve(client, settings, sale["id"], "ann", key="again")).json()["error"] == (
        "limit"
    )  # ann's order was adopted by the second attempt
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["remaining"]) == (1, 1)


async def test_a_repair_that_failed_every_attempt_is_done_by_the_pool_check(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sales = served.services.sales
    sale = await open_sale(client, settings, stock=3, limit=1)
    await _pool_gone(served, sale["id"])
    # Every unfence fails until the checks below are done (the app's own pool check, every
    # 0.25 s, repairs again too, and must fail meanwhile).
    with unfence_fails(sales, times=1_000_000):
        refused = await reserve(client, settings, sale["id"], "ann")
        assert refused.status_code == 503, refused.text
        assert sale["id"] in sales.repair.unfinished
        snap = await sales.lock.snapshot(str(sale["id"]))
        assert snap is not None and snap.fenced  # left fenced, its lease far from over
        fenced = await reserve(client, settings, sale["id"], "ann", key="fenced")
        assert fenced.status_code == 503  # a fenced pool is not repaired by a reserve
    await sales.maintenance.check_pools()
    assert sale["id"] not in sales.repair.unfinished
    held = await reserve(client, settings, sale["id"], "ann", key="after")
    assert held.status_code == 201, held.text


async def test_a_fence_another_repair_set_since_is_never_taken_over(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """This process's repair was interrupted; another process's repair then fenced the pool
    and is running: the pool check leaves that repair alone, and forgets its own."""
    sales = served.services.sales
    sale = await open_sale(client, settings, stock=3, limit=1)
    await _pool_gone(served, sale["id"])
    with unfence_fails(sales, times=1_000_000):
        refused = await reserve(client, settings, sale["id"], "ann")
        assert refused.status_code == 503, refused.text
        # The other repair fences once this process's (the app's pool check may be redoing it)
        # is over, and before the next one could begin.
        left_fenced = sales.repair.left_fenced
        sales.repair.left_fenced = no_repair  # type: ignore[method-assign]
        try:
            running = sales.repair._running.get(sale["id"])
            if running is not None:
                await asyncio.wait([running])
            theirs = await sales.lock.fence(str(sale["id"]), 3, 1, 60, "another-process", 60)
            assert theirs.ok
        finally:
            sales.repair.left_fenced = left_fenced  # type: ignore[method-assign]
        await sales.maintenance.check_pools()
        assert sale["id"] not in sales.repair.unfinished
        assert await sales.lock.fenced_by(str(sale["id"]), "another-process")
    done = await sales.lock.unfence(str(sale["id"]), "another-process", 3)
    assert done.ok  # their repair ends as it would have
    held = await reserve(client, settings, sale["id"], "ann", key="after")
    assert held.status_code == 201, held.text
