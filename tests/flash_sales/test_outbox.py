"""The outbox is written with what it announces: an `order.created` per order in the group
commit's own statement, one entry per batch (two writers, as two processes, racing on one sale);
a sale's moves once each; and a sale's events numbered without gaps in the order they
committed."""

from __future__ import annotations

import asyncio
import collections
import json

import httpx
from sale_kit import ROOM, client, db, open_sale
from serve_kit import Served
from webhook_kit import outbox

from flash_sales.model import Order, OrderRequest
from flash_sales.orders import OrderWriter, Refused
from live.settings import Settings
from rooms.actors import Actor, Role

__all__ = ["client"]  # the fixture, used by name


async def test_each_order_is_written_with_its_event(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = (await open_sale(client, settings, stock=300))["id"]
    writers = [served.services.sales.writer, OrderWriter(served.services.pg, max_batch=16)]
    requests = [
        OrderRequest(f"{sale}.{n}-{n:016x}", sale, f"b{n}", 1, 500, 1, "pay") for n in range(400)
    ]
    results = await asyncio.gather(
        *(writers[n % 2].write(request) for n, request in enumerate(requests))
    )
    kinds = collections.Counter(type(result).__name__ for result in results)
    assert kinds == {"Order": 300, "Refused": 100}, kinds  # the guard refused the rest
    assert all(r.reason == "sold_out" for r in results if isinstance(r, Refused))
    # again: each hold is decided once, and no second event is written
    again = await asyncio.gather(*(writers[0].write(request) for request in requests[:50]))
    assert {type(result) for result in again} <= {Order, Refused}
    events = await outbox(settings)
    assert [e["seq"] for e in events] == list(range(1, 302))  # gapless, in commit order
    assert events[0]["type"] == "sale.started"
    assert {e["type"] for e in events[1:]} == {"order.created"}
    placed = {r.id for r in results if isinstance(r, Order)}
    announced = [e["order_id"] for e in events[1:]]
    # each once; numbered as their batches took the sale's row (two writers: not in id order)
    assert len(announced) == len(placed) and set(announced) == placed
    conn = await db(settings)
    try:  # one entry per batch: far fewer rows than orders
        entries = await conn.fetchval("SELECT count(*) FROM outbox WHERE type = 'order.created'")
        assert 1 <= entries < 300, entries
    finally:
        await conn.close()


async def test_a_sales_move_is_announced_once(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """Several processes race to move a sale: one of them moves it, and only its event is
    written (in the transaction of its guarded UPDATE)."""
    sale = (await open_sale(client, settings, stock=1))["id"]
    lifecycle = served.services.sales.lifecycle
    await asyncio.gather(*(lifecycle.sold_out(sale) for _ in range(8)))
    await asyncio.gather(*(lifecycle.reopen_if_stock(sale) for _ in range(8)))  # 1 left
    host = Actor("host", Role.HOST, ROOM)
    stopped = await asyncio.gather(*(lifecycle.stop_now(sale, host) for _ in range(8)))
    assert {s["state"] for s in stopped} == {"ended"}
    events = await outbox(settings)
    assert [e["type"] for e in events] == [
        "sale.started",
        "sale.sold_out",
        "sale.started",
        "sale.ended",
    ]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    conn = await db(settings)
    try:
        data = await conn.fetch("SELECT data FROM outbox ORDER BY seq")
    finally:
        await conn.close()
    reopened = json.loads(data[2]["data"])
    assert reopened["reopened"] is True and reopened["sale"]["state"] == "open"
    assert json.loads(data[3]["data"])["sale"]["state"] == "ended"
