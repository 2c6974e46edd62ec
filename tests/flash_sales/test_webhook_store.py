"""The dispatcher's bookkeeping in PostgreSQL, driven by hand: a dispatcher whose lease ran out
writes nothing more about the queue, a failing delivery gets its last attempt at its max age,
and only what nobody works on is expired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sale_kit import open_sale
from serve_kit import serve_app
from webhook_kit import SECRET, delivering, receiving, until_stored

from flash_sales.webhooks.deliveries import DeliveryStore, Queue
from flash_sales.webhooks.dispatcher import Dispatcher
from flash_sales.webhooks.endpoints import GLOBAL, Endpoint, RetryPolicy
from live.settings import Settings

MAX_AGE_S = 3600.0


@pytest.fixture
async def one_delivery(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A sale.started delivery to a receiver that is down, made by a service that has stopped
    since: (a pool on the schema, the endpoint's url)."""
    async with receiving(up=False) as receiver:
        own = delivering(settings, receiver.url)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            await open_sale(client, own, stock=1)
            await until_stored(own, lambda _, sent: bool(sent) and sent[0]["attempts"], "tried")
        pool = await asyncpg.create_pool(
            own.database_url,
            min_size=1,
            max_size=2,
            server_settings={"search_path": own.database_schema},
        )
        try:
            yield pool, receiver.url
        finally:
            await pool.close()


async def _claim(store: DeliveryStore, pool: asyncpg.Pool, url: str) -> Queue:
    await pool.execute("UPDATE delivery_queues SET next_at = now(), claim = NULL")
    (queue,) = await store.claim(10, 60.0, [url], [])
    return queue


async def _row(pool: asyncpg.Pool) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT attempts, dead, delivered_at, next_at, created_at, "
        "extract(epoch FROM next_at - created_at)::float8 AS due_after_s FROM deliveries"
    )
    assert row is not None
    return dict(row)


async def test_a_dispatcher_whose_claim_was_taken_over_writes_nothing(
    one_delivery: tuple[asyncpg.Pool, str],
) -> None:
    pool, url = one_delivery
    store = DeliveryStore(pool)
    queue = await _claim(store, pool, url)
    (delivery,) = await store.pending(queue, 10)
    before = await _row(pool)
    # its lease ran out, and another dispatcher claimed the queue
    await pool.execute("UPDATE delivery_queues SET claim = gen_random_uuid()")
    assert not await store.failed(queue, delivery, 500, "HTTP 500", None)
    await store.delivered(queue, [(delivery.id, 200)])
    assert await _row(pool) == before  # neither dead-lettered nor marked delivered
    ours = await _claim(store, pool, url)
    assert await store.failed(ours, delivery, 500, "HTTP 500", 1.0)
    assert (await _row(pool))["attempts"] == before["attempts"] + 1


async def test_a_failing_delivery_gets_its_last_attempt_at_its_max_age(
    one_delivery: tuple[asyncpg.Pool, str],
) -> None:
    pool, url = one_delivery
    store = DeliveryStore(pool)
    dispatcher = Dispatcher(
        store,
        [Endpoint(GLOBAL, url, (SECRET,))],
        RetryPolicy(1.0, MAX_AGE_S, MAX_AGE_S),
        timeout_s=1.0,
        interval_s=0.05,
        retention_s=MAX_AGE_S,
    )
    try:
        # many attempts already: the next wait would be up to an hour, past its max age
        await pool.execute(
            "UPDATE deliveries SET attempts = 20, created_at = now() - interval '3590 seconds'"
        )
        await _attempt(dispatcher, pool)
        row = await _row(pool)
        assert (row["attempts"], row["dead"]) == (21, False)
        assert row["due_after_s"] <= MAX_AGE_S + 1.0, row  # the last attempt, at its max age
        # upkeep leaves it alone: it is still to be tried, by whoever works its queue
        await pool.execute("UPDATE deliveries SET created_at = now() - interval '2 days'")
        assert await store.expire(MAX_AGE_S, 60.0) == 0
        await pool.execute("UPDATE deliveries SET next_at = now() - interval '1 hour'")
        await pool.execute("UPDATE deliveries SET created_at = now() - interval '3601 seconds'")
        await _attempt(dispatcher, pool)  # that last attempt fails: dead-lettered then
        row = await _row(pool)
        assert (row["attempts"], row["dead"]) == (22, True)
    finally:
        await dispatcher.aclose()


async def test_only_what_nobody_tried_when_it_was_due_expires(
    one_delivery: tuple[asyncpg.Pool, str],
) -> None:
    pool, _ = one_delivery
    store = DeliveryStore(pool)
    await pool.execute(
        "UPDATE deliveries SET created_at = now() - interval '2 days', "
        "next_at = now() + interval '10 minutes'"
    )
    assert await store.expire(MAX_AGE_S, 60.0) == 0  # its next attempt is still to come
    await pool.execute("UPDATE deliveries SET next_at = now() - interval '2 minutes'")
    assert await store.expire(MAX_AGE_S, 60.0) == 1  # overdue: nobody works on its queue
    assert (await _row(pool))["dead"]


async def _attempt(dispatcher: Dispatcher, pool: asyncpg.Pool) -> None:
    """Claim the queue (due now) and wait until its attempt is recorded and the queue is
    given back."""
    attempts = (await _row(pool))["attempts"]
    await pool.execute("UPDATE delivery_queues SET next_at = now(), claim = NULL")
    await pool.execute("UPDATE deliveries SET next_at = now() WHERE NOT dead")
    await dispatcher.dispatch()
    async with asyncio.timeout(30):
        while (await _row(pool))["attempts"] == attempts or await pool.fetchval(  # noqa: ASYNC110
            "SELECT count(*) FROM delivery_queues WHERE claim IS NOT NULL"
        ):
            await asyncio.sleep(0.02)  # the dispatcher's task writes it, bounded
