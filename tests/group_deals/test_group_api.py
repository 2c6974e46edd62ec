"""Group deals through the real app under uvicorn, as a client uses them: made, started and shown
at the sales' routes, groups started (idempotently), joined, left and listed over HTTP and the
WebSocket, the flash-sale routes refusing a group deal, the room's `stock` event, and `live
reconcile` over a room with both kinds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from live_env import live_env
from serve_kit import Served
from websockets.asyncio.client import connect

from gateway.auth import mint
from live.settings import Settings
from rooms.actors import Role

ROOM = "together"
DEAL = {
    "kind": "group",
    "stock": 6,
    "price_cents": 1000,
    "group_price_cents": 700,
    "limit_per_buyer": 1,
    "group_size": 2,
    "group_window_s": 600,
}


def auth(settings: Settings, sub: str, role: Role = Role.VIEWER) -> dict[str, str]:
    token = mint(settings.jwt_secret, sub=sub, role=role, room=ROOM, ttl_s=600, name=sub.title())
    return {"authorization": f"Bearer {token}"}


def run_reconcile(settings: Settings, *sale_ids: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "live.cli", "reconcile", *map(str, sale_ids)],
        env=live_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        yield http


async def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def make_deal(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    host = auth(settings, "host", Role.HOST)
    await ok(await client.put(f"/api/rooms/{ROOM}", json={"title": "Together"}, headers=host))
    product = await ok(
        await client.post(
            f"/api/rooms/{ROOM}/products",
            json={"sku": "mug", "title": "Mug", "price_cents": 1000},
            headers=host,
        ),
        201,
    )
    made = await client.post(
        f"/api/rooms/{ROOM}/sales", json={**DEAL, "product_id": product["id"]}, headers=host
    )
    deal = await ok(made, 201)
    assert (deal["kind"], deal["state"], deal["group_size"]) == ("group", "scheduled", 2)
    return await ok(await client.post(f"/api/sales/{deal['id']}/start", headers=host))


async def test_a_group_deal_over_http(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    deal = await make_deal(client, settings)
    sale = deal["id"]
    assert (deal["state"], deal["remaining"]) == ("open", 6)
    ann = {**auth(settings, "ann"), "idempotency-key": "start-1"}
    started = await ok(await client.post(f"/api/sales/{sale}/groups", headers=ann), 201)
    again = await ok(await client.post(f"/api/sales/{sale}/groups", headers=ann), 201)
    assert again["id"] == started["id"] and again["members"] == 1, "a retried start: one group"
    listed = await ok(await client.get(f"/api/sales/{sale}/groups"))
    assert [g["id"] for g in listed["groups"]] == [started["id"]]

    group = started["id"]
    bob = auth(settings, "bob")
    formed = await ok(await client.post(f"/api/groups/{group}/join", headers=bob))
    assert (formed["state"], formed["members"], formed["joined"]) == ("formed", 2, True)
    full = await client.post(f"/api/groups/{group}/join", headers=auth(settings, "cy"))
    assert (full.status_code, full.json()["error"]) == (409, "group_full")
    left = await client.post(f"/api/groups/{group}/leave", headers=bob)  # formed: too late
    assert (left.status_code, left.json()["error"]) == (409, "group_full")
    view = await ok(await client.get(f"/api/groups/{group}"))
    assert (view["state"], view["members"], "joined" not in view) == ("formed", 2, True)

    host = auth(settings, "host", Role.HOST)
    figures = await ok(await client.get(f"/api/sales/{sale}", headers=host))
    assert (figures["remaining"], figures["held"], figures["orders"]) == (4, 0, 2)
    assert figures["revenue_cents"] == 1400
    # The flash-sale routes cannot sell or change a group deal's stock.
    for path, body in (
        (f"/api/sales/{sale}/reservations", {"qty": 1}),
        (f"/api/sales/{sale}/stock", {"delta": 1}),
    ):
        refused = await client.post(path, json=body, headers={**host, "idempotency-key": "k"})
        assert (refused.status_code, refused.json()["error"]) == (409, "group_deal"), path
    assert (await ok(await client.get(f"/api/sales/{sale}", headers=host)))["stock"] == 6

    stopped = await ok(await client.post(f"/api/sales/{sale}/stop", headers=host))
    assert stopped["state"] == "ended"
    late = await client.post(f"/api/sales/{sale}/groups", headers=auth(settings, "dee"))
    assert (late.status_code, late.json()["error"]) == (409, "not_open")

    good = await asyncio.to_thread(run_reconcile, settings)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[1].split() == [str(sale), "ok", "ok"], good.stdout
    ghost = await client.post(  # a half-group's order, as no path of the service can write
        f"/api/sales/{sale}/groups", headers=auth(settings, "eve")
    )
    assert ghost.status_code == 409
    await served.services.pg.execute(
        "INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents, total_cents,"
        " payment_ref, group_id) VALUES ('ghost', $1, 'x', 1, 700, 700, 'p', $2)",
        sale,
        group,
    )
    bad = await asyncio.to_thread(run_reconcile, settings, sale)
    assert bad.returncode == 1 and "BROKEN" in bad.stdout, bad.stdout
    assert f"group {group} (formed): 2 members, 3 orders" in bad.stdout


async def test_group_commands_over_the_websocket(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    deal = await make_deal(client, settings)
    url = f"{served.url.replace('http://', 'ws://', 1)}/ws/rooms/{ROOM}"
    token = auth(settings, "ann")["authorization"].removeprefix("Bearer ")
    async with connect(f"{url}?token={token}") as ws:

        async def ask(message: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(message))
            async with asyncio.timeout(10):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] in ("reply", "error") and frame["ref"] == message["ref"]:
                        return frame  # type: ignore[no-any-return]

        started = await ask({"type": "group_start", "sale_id": deal["id"], "ref": "s"})
        assert started["ok"] and started["data"]["state"] == "forming", started
        group = started["data"]["id"]
        twice = await ask({"type": "group_join", "group_id": group, "ref": "j"})
        assert (twice["ok"], twice["error"]) == (False, "already_member")
        left = await ask({"type": "group_leave", "group_id": group, "ref": "l"})
        assert left["ok"] and left["data"]["state"] == "failed", left  # its last member left
        bad = await ask({"type": "group_join", "group_id": "x", "ref": "b"})
        assert (bad["ok"], bad["error"]) == (False, "invalid")
    host = auth(settings, "host", Role.HOST)
    figures = await ok(await client.get(f"/api/sales/{deal['id']}", headers=host))
    assert (figures["remaining"], figures["held"], figures["orders"]) == (6, 0, 0)
