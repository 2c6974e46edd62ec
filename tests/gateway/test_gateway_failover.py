"""A Redis Cluster primary killed mid-sale (SIGKILL; its replica is promoted): no oversell, no
acknowledged order lost, the sale sells again within seconds, and viewers keep receiving pins.

The room and the sale are placed on the same shard, the one killed, so both the room's log and
sharded pub/sub and the sale's pool go through the failover. The cluster is the test's own
(3 primaries, 3 replicas, failover 1 s after a primary stops answering)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from cluster_kit import (
    Follower,
    buyer_headers,
    create_sale,
    own_cluster,
    pin_steadily,
    start_sale,
    until,
)
from gateway_testkit import Room, make_room, serve

from live.embedded_cluster import LocalCluster
from live.settings import Settings

STOCK = 150
BUYERS = 400
CONCURRENCY = 12
KILL_AFTER_ORDERS = 30
SELLS_AGAIN_S = 15.0  # measured: under 2 s (1 s to detect, the election, the pool repaired)


@dataclasses.dataclass
class Shop:
    orders: list[str] = dataclasses.field(default_factory=list)  # acknowledged (201) confirms
    holds_at: list[float] = dataclasses.field(default_factory=list)  # each 201 reservation
    errors: list[str] = dataclasses.field(default_factory=list)  # any 5xx but 503


async def buy(client: httpx.AsyncClient, room: Room, sale_id: int, buyer: str, shop: Shop) -> None:
    """One buyer: reserve, then confirm, each retried (same idempotency key) while the service
    answers 5xx or cannot be reached, until a final answer or 60 s (a 5xx but 503 is noted)."""
    headers = buyer_headers(room, buyer)
    deadline = time.monotonic() + 60
    hold_id = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if not hold_id:
                response = await client.post(
                    f"/api/sales/{sale_id}/reservations",
                    json={"qty": 1},
                    headers={**headers, "idempotency-key": f"k-{buyer}"},
                )
                if response.status_code == 201:
                    hold_id = response.json()["id"]
                    shop.holds_at.append(time.monotonic())
                    continue
            else:
                response = await client.post(
                    f"/api/reservations/{hold_id}/confirm",
                    json={"payment_ref": f"pay-{buyer}"},
                    headers=headers,
                )
                if response.status_code == 201:
                    shop.orders.append(hold_id)
                    return
            if response.status_code < 500:
                return  # a refusal (sold out, ...): final
            if response.status_code != 503:
                shop.errors.append(f"{response.status_code} {response.text[:200]}")
        await asyncio.sleep(0.2)


async def sale_on_shard_of_room(
    client: httpx.AsyncClient, room: Room, cluster: LocalCluster
) -> int:
    """A sale of the room whose pool is on the room's primary (sales are numbered by PostgreSQL:
    new ones until one lands there; a third of them do)."""
    target = await asyncio.to_thread(cluster.primary_of, f"{{room:{room.id}}}")
    for _ in range(30):
        sale_id = await create_sale(client, room, STOCK)
        if await asyncio.to_thread(cluster.primary_of, f"{{sale:{sale_id}}}") == target:
            return sale_id
    raise AssertionError("no sale landed on the room's shard")


async def test_a_primary_killed_mid_sale(
    settings: Settings, tmp_path: Path, on_cluster: bool
) -> None:
    if on_cluster:
        pytest.skip("starts a cluster of its own: run once, in the plain session")
    async with own_cluster(tmp_path / "cluster") as cluster:
        settings = dataclasses.replace(settings, redis_url=cluster.url)
        async with (
            serve(settings) as served,
            httpx.AsyncClient(base_url=served.url, timeout=10) as client,
        ):
            room = await make_room(served.url, settings, room="failover")
            sale_id = await sale_on_shard_of_room(client, room, cluster)
            victim = cluster.primary_of(f"{{sale:{sale_id}}}")
            await start_sale(client, room, sale_id)

            stop, pinning = asyncio.Event(), asyncio.Event()
            followers = [Follower(served.url, room, f"viewer-{i}") for i in range(4)]
            for follower in followers:
                follower.start(stop)
            await until(lambda: all(f.connected.is_set() for f in followers), 20, "viewers in")
            pins = asyncio.create_task(pin_steadily(served.url, room, pinning))

            shop = Shop()
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(n: int) -> None:
                async with gate:
                    await buy(client, room, sale_id, f"buyer-{n}", shop)

            buyers = asyncio.gather(*(one(n) for n in range(BUYERS)))
            await until(lambda: len(shop.orders) >= KILL_AFTER_ORDERS, 60, "orders before")
            await asyncio.to_thread(cluster.kill, victim)
            killed_at = time.monotonic()
            await asyncio.wait_for(buyers, 180)
            await asyncio.sleep(1)  # pins after the last sale
            pinning.set()
            acknowledged = await pins
            await until(
                lambda: all(f.last_seq >= max(acknowledged) for f in followers), 10, "last pin"
            )
            stop.set()
            await asyncio.gather(*(f.wait_stopped() for f in followers))

            # The sale sold again, soon.
            after = [t for t in shop.holds_at if t > killed_at]
            assert after, "no reservation succeeded after the failover"
            assert after[0] - killed_at < SELLS_AGAIN_S, f"sold again after {after[0] - killed_at}"
            assert cluster.primary_of(f"{{sale:{sale_id}}}") != victim  # its replica serves

            # No oversell, no acknowledged order lost.
            conn = await asyncpg.connect(
                settings.database_url, server_settings={"search_path": settings.database_schema}
            )
            try:
                sold = await conn.fetchval("SELECT sold FROM sales WHERE id = $1", sale_id)
                stored = {
                    row["reservation_id"]
                    for row in await conn.fetch(
                        "SELECT reservation_id FROM orders WHERE sale_id = $1", sale_id
                    )
                }
            finally:
                await conn.close()
            assert not shop.errors, f"5xx other than 503: {shop.errors[:5]}"
            assert sold <= STOCK
            assert len(stored) == sold
            assert set(shop.orders) <= stored, "an acknowledged order is missing"
            assert len(shop.orders) == STOCK  # every unit sold: BUYERS > STOCK

            # Viewers kept receiving pins: every acknowledged pin, in order.
            assert len(acknowledged) > 10
            for follower in followers:
                received = follower.pins()
                assert received == sorted(set(received)), f"{follower.name}: out of order"
                missing = set(acknowledged) - set(received)
                assert not missing, f"{follower.name} missed pins {sorted(missing)}"
