"""What the flash-sale tests share: tokens, an HTTP client of the served app, a room with an
open sale, and the buyer's calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.auth import mint
from live.db import application_name
from live.settings import Settings
from rooms.actors import Role

ROOM = "shop"


def token(
    settings: Settings, sub: str, role: Role = Role.VIEWER, room: str = ROOM, ttl: int = 600
) -> str:
    return mint(settings.jwt_secret, sub=sub, role=role, room=room, ttl_s=ttl, name=sub.title())


def auth(
    settings: Settings, sub: str, role: Role = Role.VIEWER, room: str = ROOM
) -> dict[str, str]:
    return {"authorization": f"Bearer {token(settings, sub, role, room)}"}


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server, timeout=30, limits=limits) as http:
        yield http


async def open_sale(
    client: httpx.AsyncClient,
    settings: Settings,
    *,
    stock: int,
    hold_seconds: int = 60,
    limit: int = 1,
) -> dict[str, Any]:
    host = auth(settings, "host", Role.HOST)
    assert (
        await client.put(f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=host)
    ).status_code == 200
    product = await client.post(
        f"/api/rooms/{ROOM}/products",
        json={"sku": "mug", "title": "Mug", "price_cents": 900},
        headers=host,
    )
    sale = await client.post(
        f"/api/rooms/{ROOM}/sales",
        json={
            "product_id": product.json()["id"],
            "stock": stock,
            "price_cents": 500,
            "limit_per_buyer": limit,
            "hold_seconds": hold_seconds,
        },
        headers=host,
    )
    assert sale.status_code == 201, sale.text
    assert sale.json()["state"] == "scheduled"
    started = await client.post(f"/api/sales/{sale.json()['id']}/start", headers=host)
    assert started.json()["state"] == "open"
    return started.json()  # type: ignore[no-any-return]


async def reserve(
    client: httpx.AsyncClient,
    settings: Settings,
    sale_id: int,
    buyer: str,
    key: str = "k",
    qty: int = 1,
) -> httpx.Response:
    return await client.post(
        f"/api/sales/{sale_id}/reservations",
        json={"qty": qty},
        headers={**auth(settings, buyer), "idempotency-key": key},
    )


async def confirm(
    client: httpx.AsyncClient, settings: Settings, hold_id: str, buyer: str
) -> httpx.Response:
    return await client.post(
        f"/api/reservations/{hold_id}/confirm",
        json={"payment_ref": f"pay-{buyer}"},
        headers=auth(settings, buyer),
    )


async def figures(client: httpx.AsyncClient, settings: Settings, sale_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/sales/{sale_id}", headers=auth(settings, "host", Role.HOST))
    return response.json()  # type: ignore[no-any-return]


async def db(settings: Settings) -> asyncpg.Connection:
    """A connection of the test's own to the service's schema."""
    return await asyncpg.connect(
        settings.database_url, server_settings={"search_path": settings.database_schema}
    )


@contextlib.asynccontextmanager
async def locked_sale_row(settings: Settings, sale_id: int) -> AsyncIterator[None]:
    """The sale's row locked (FOR UPDATE) in a transaction of our own: every order of the sale
    waits until the block is left, as behind a stalled database."""
    conn = await db(settings)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM sales WHERE id = $1 FOR UPDATE", sale_id)
            yield
    finally:
        await conn.close()


async def until_waiting_on_locks(settings: Settings, count: int, within_s: float = 10) -> None:
    """Until `count` statements of the service wait for a lock in PostgreSQL."""
    conn = await db(settings)
    try:
        async with asyncio.timeout(within_s):
            while (  # noqa: ASYNC110 (a condition in another server: no event to wait on)
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    application_name(settings),
                )
                < count
            ):
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def write_order(
    settings: Settings, sale_id: int, reservation_id: str, buyer: str, *, outcome: bool = True
) -> None:
    """An order of one item written straight into PostgreSQL, as a process of another release
    (`outcome=False`: without its hold_outcomes row) or a Redis that forgot it would leave it."""
    conn = await db(settings)
    try:
        async with conn.transaction():
            if outcome:
                await conn.execute(
                    "INSERT INTO hold_outcomes (reservation_id, sale_id, outcome) "
                    "VALUES ($1, $2, 'order')",
                    reservation_id,
                    sale_id,
                )
            await conn.execute(
                "INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents, "
                "total_cents, payment_ref) VALUES ($1, $2, $3, 1, 500, 500, 'secret')",
                reservation_id,
                sale_id,
                buyer,
            )
            await conn.execute("UPDATE sales SET sold = sold + 1 WHERE id = $1", sale_id)
    finally:
        await conn.close()
