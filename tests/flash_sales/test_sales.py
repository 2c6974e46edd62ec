"""Flash sales end to end over HTTP, on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

import httpx
import pytest
from sale_kit import ROOM, auth, client, confirm, figures, open_sale, reserve, token
from serve_kit import Served

from gateway.auth import mint
from inventory_lock import ReserveBatcher
from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name


async def test_thousand_buyers_on_fifty_items(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=50)

    async def buyer(n: int) -> tuple[int, str]:
        held = await reserve(client, settings, sale["id"], f"b{n}", key=f"attempt-{n}")
        if held.status_code != 201:
            return held.status_code, held.json()["error"]
        outcomes = [await confirm(client, settings, held.json()["id"], f"b{n}") for _ in range(3)]
        assert {o.status_code for o in outcomes} == {201}
        assert len({o.json()["id"] for o in outcomes}) == 1  # retried confirm: one order
        return 201, "order"

    results = collections.Counter(await asyncio.gather(*(buyer(n) for n in range(1000))))
    assert results == {(201, "order"): 50, (409, "sold_out"): 950}
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["orders"], numbers["remaining"]) == (50, 50, 0)
    assert numbers["state"] == "sold_out"
    assert numbers["revenue_cents"] == 50 * 500
    report = await served.services.sales.lock.check(str(sale["id"]))
    assert report is not None and report.ok and report.confirmed == 50


async def test_same_idempotency_key_gives_the_same_hold(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    sale = await open_sale(client, settings, stock=10, limit=2)
    first = await reserve(client, settings, sale["id"], "ann", key="same")
    again = await asyncio.gather(
        *(reserve(client, settings, sale["id"], "ann", key="same") for _ in range(20))
    )
    assert {r.json()["id"] for r in again} == {first.json()["id"]}
    assert (await figures(client, settings, sale["id"]))["held"] == 1


async def test_a_full_reserve_queue_sheds_load_with_503(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """Past the batcher's bound of waiting reservations a buyer gets 503 with Retry-After at
    once; every other buyer is answered as usual and the pool stays consistent."""
    sale = await open_sale(client, settings, stock=500)
    sales = served.services.sales
    saved = sales.buying.reserver
    sales.buying.reserver = ReserveBatcher(sales.lock, max_pending=1, max_in_flight=1)
    try:
        answers = await asyncio.gather(
            *(reserve(client, settings, sale["id"], f"b{n}", key=f"k{n}") for n in range(60))
        )
    finally:
        sales.buying.reserver = saved
    shed = [a for a in answers if a.status_code == 503]
    held = [a for a in answers if a.status_code == 201]
    assert len(shed) + len(held) == len(answers)
    assert shed, "60 buyers at once never filled a queue of one"
    assert all(a.json()["error"] == "unavailable" and "retry-after" in a.headers for a in shed)
    report = await sales.lock.check(str(sale["id"]))
    assert report is not None and report.ok and report.held == len(held)


async def test_expired_holds_return_stock_and_reopen_the_sale(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    sale = await open_sale(client, settings, stock=2, hold_seconds=1)
    holds = [await reserve(client, settings, sale["id"], f"b{n}") for n in range(2)]
    assert [h.status_code for h in holds] == [201, 201]
    assert (await reserve(client, settings, sale["id"], "late")).json()["error"] == "sold_out"
    assert (await figures(client, settings, sale["id"]))["state"] == "sold_out"
    await asyncio.sleep(1.8)
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["remaining"], numbers["held"], numbers["state"]) == (2, 0, "open")
    late = await confirm(client, settings, holds[0].json()["id"], "b0")
    assert late.status_code == 409
    assert late.json()["error"] == "expired"
    assert (await reserve(client, settings, sale["id"], "late", key="again")).status_code == 201


async def test_cancel_returns_stock(client: httpx.AsyncClient, settings: Settings) -> None:
    sale = await open_sale(client, settings, stock=1)
    hold = await reserve(client, settings, sale["id"], "ann")
    cancelled = await client.delete(
        f"/api/reservations/{hold.json()['id']}", headers=auth(settings, "ann")
    )
    assert cancelled.status_code == 200
    assert (await reserve(client, settings, sale["id"], "bob")).status_code == 201


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("unknown_sale", 404, "not_found"),
        ("wrong_room", 403, "forbidden"),
        ("expired_token", 401, "token_expired"),
        ("no_token", 401, "token_required"),
        ("viewer_starts_sale", 403, "forbidden"),
        ("viewer_reads_figures", 403, "forbidden"),
        ("malformed_json", 400, "bad_request"),
        ("qty_above_limit", 422, "limit"),
        ("no_idempotency_key", 422, "invalid"),
        ("viewer_creates_sale", 403, "forbidden"),
    ],
)
async def test_bad_requests_change_nothing(
    client: httpx.AsyncClient, settings: Settings, case: str, status: int, error: str
) -> None:
    sale = await open_sale(client, settings, stock=5, limit=2)
    path = f"/api/sales/{sale['id']}/reservations"
    viewer = {**auth(settings, "v"), "idempotency-key": "k"}
    if case == "unknown_sale":
        response = await client.post("/api/sales/999999/reservations", json={}, headers=viewer)
    elif case == "wrong_room":
        response = await client.post(
            path, json={}, headers={**auth(settings, "v", room="other"), "idempotency-key": "k"}
        )
    elif case == "expired_token":
        expired = mint(settings.jwt_secret, sub="v", role=Role.VIEWER, room=ROOM, ttl_s=1)
        await asyncio.sleep(1.1)
        response = await client.post(
            path, json={}, headers={"authorization": f"Bearer {expired}", "idempotency-key": "k"}
        )
    elif case == "no_token":
        response = await client.post(path, json={}, headers={"idempotency-key": "k"})
    elif case == "viewer_starts_sale":
        response = await client.post(f"/api/sales/{sale['id']}/stop", headers=auth(settings, "v"))
    elif case == "viewer_reads_figures":
        response = await client.get(f"/api/sales/{sale['id']}", headers=auth(settings, "v"))
    elif case == "malformed_json":
        response = await client.post(path, content=b"{nope", headers=viewer)
    elif case == "qty_above_limit":
        response = await client.post(path, json={"qty": 3}, headers=viewer)
    elif case == "no_idempotency_key":
        response = await client.post(path, json={}, headers=auth(settings, "v"))
    else:
        response = await client.post(
            f"/api/rooms/{ROOM}/sales",
            json={"product_id": 1, "stock": 1, "price_cents": 1},
            headers=auth(settings, "v"),
        )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert set(response.json()) == {"error", "detail"}
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["remaining"], numbers["held"], numbers["sold"], numbers["state"]) == (
        5,
        0,
        0,
        "open",
    )


async def test_buying_over_the_websocket(
    server: str, client: httpx.AsyncClient, settings: Settings
) -> None:

    from websockets.asyncio.client import connect

    sale = await open_sale(client, settings, stock=2)
    url = server.replace("http", "ws") + f"/ws/rooms/{ROOM}?token={token(settings, 'ann')}"
    async with connect(url) as ws:

        async def reply(ref: str) -> dict[str, Any]:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if frame["type"] in ("reply", "error") and frame["ref"] == ref:
                    return frame  # type: ignore[no-any-return]

        await ws.send(
            json.dumps(
                {
                    "type": "buy",
                    "ref": "1",
                    "sale_id": sale["id"],
                    "qty": 1,
                    "idempotency_key": "w1",
                }
            )
        )
        held = await reply("1")
        assert held["ok"], held
        await ws.send(
            json.dumps(
                {
                    "type": "confirm",
                    "ref": "2",
                    "reservation_id": held["data"]["id"],
                    "payment_ref": "p",
                }
            )
        )
        order = await reply("2")
        assert order["ok"] and order["data"]["qty"] == 1
        await ws.send(
            json.dumps(
                {
                    "type": "buy",
                    "ref": "3",
                    "sale_id": sale["id"],
                    "qty": 1,
                    "idempotency_key": "w2",
                }
            )
        )
        again = await reply("3")
        assert again["error"] == "limit"  # one per buyer, confirmed items included
    assert (await reserve(client, settings, sale["id"], "bob")).status_code == 201
    late = await reserve(client, settings, sale["id"], "carol")
    assert late.json()["error"] == "sold_out"


async def test_scheduled_sale_opens_and_ends_on_time(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:

    host = auth(settings, "host", Role.HOST)
    await client.put(f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=host)
    product = await client.post(
        f"/api/rooms/{ROOM}/products",
        json={"sku": "mug", "title": "Mug", "price_cents": 900},
        headers=host,
    )
    now_ms = int(time.time() * 1000)
    created = await client.post(
        f"/api/rooms/{ROOM}/sales",
        json={
            "product_id": product.json()["id"],
            "stock": 3,
            "price_cents": 500,
            "starts_at": now_ms + 1000,
            "ends_at": now_ms + 2500,
        },
        headers=host,
    )
    sale_id = created.json()["id"]
    assert created.json()["state"] == "scheduled"
    early = await reserve(client, settings, sale_id, "ann")
    assert early.json()["error"] == "not_open"
    await asyncio.sleep(1.6)
    assert (await figures(client, settings, sale_id))["state"] == "open"
    assert (await reserve(client, settings, sale_id, "ann", key="on-time")).status_code == 201
    await asyncio.sleep(1.6)
    assert (await figures(client, settings, sale_id))["state"] == "ended"
    late = await reserve(client, settings, sale_id, "bob")
    assert late.json()["error"] == "not_open"
    log = served.services.rooms.log
    replay = await log.read_since(ROOM, (await log.position(ROOM))[0], 0, 1000)
    types = [json.loads(raw)["type"] for raw in replay.events]
    assert types.index("sale_scheduled") < types.index("sale_started") < types.index("sale_ended")


async def test_purchase_shows_a_name_only_when_allowed(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=2)
    log = served.services.rooms.log
    names = []
    for buyer, show in (("ann", False), ("bob", True)):
        held = await reserve(client, settings, sale["id"], buyer)
        confirmed = await client.post(
            f"/api/reservations/{held.json()['id']}/confirm",
            json={"payment_ref": "p", "show_name": show},
            headers=auth(settings, buyer),
        )
        assert confirmed.status_code == 201
        replay = await log.read_since(ROOM, (await log.position(ROOM))[0], 0, 1000)
        purchases = [json.loads(raw) for raw in replay.events]
        names = [e["data"]["name"] for e in purchases if e["type"] == "purchase"]
        await asyncio.sleep(0.6)  # purchases are sampled: one per sale per 0.5 s
    assert names == [None, "Bob"]


@pytest.mark.parametrize("payment_ref", ["nul\u0000byte", "lone\ud800surrogate"])
async def test_unstorable_payment_ref_is_refused_and_the_hold_stays(
    client: httpx.AsyncClient, settings: Settings, payment_ref: str
) -> None:
    sale = await open_sale(client, settings, stock=1)
    held = await reserve(client, settings, sale["id"], "ann")
    refused = await client.post(
        f"/api/reservations/{held.json()['id']}/confirm",
        content=json.dumps({"payment_ref": payment_ref}).encode(),
        headers={**auth(settings, "ann"), "content-type": "application/json"},
    )
    assert refused.status_code == 422
    assert (await confirm(client, settings, held.json()["id"], "ann")).status_code == 201


async def test_malformed_reservation_ids_are_not_found(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await open_sale(client, settings, stock=1)
    for bad in ("nodot", "1.x", "99999999999999999999.1", "a.1"):
        response = await confirm(client, settings, bad, "ann")
        assert response.status_code == 404, (bad, response.text)
        assert response.json()["error"] == "not_found"


async def test_an_ended_sale_without_holds_in_flight_leaves_redis(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=3)
    sales = served.services.sales
    held = await reserve(client, settings, sale["id"], "ann")
    order = await confirm(client, settings, held.json()["id"], "ann")
    pending = await reserve(client, settings, sale["id"], "bob")
    host = auth(settings, "host", Role.HOST)
    assert (await client.post(f"/api/sales/{sale['id']}/stop", headers=host)).status_code == 200
    await sales.maintenance.check_pools()  # the sweeps walk the pools it read from PostgreSQL
    await sales.maintenance.drop_finished_pools()
    assert await sales.lock.exists(str(sale["id"]))  # bob's hold is still in flight
    cancelled = await client.delete(
        f"/api/reservations/{pending.json()['id']}", headers=auth(settings, "bob")
    )
    assert cancelled.status_code == 200
    await sales.maintenance.drop_finished_pools()
    assert not await sales.lock.exists(str(sale["id"]))
    again = await confirm(client, settings, held.json()["id"], "ann")
    assert (again.status_code, again.json()["id"]) == (201, order.json()["id"])
    late = await reserve(client, settings, sale["id"], "carol")
    assert late.json()["error"] == "not_open"
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["remaining"], numbers["held"]) == (1, 2, 0)
