"""The waitlist of a sold-out sale over HTTP and the WebSocket, on real Redis and PostgreSQL: a
freed unit is offered to the first waiter as a direct `offer`, confirmed like a hold; one that
lapses goes on to the next; bad requests get typed errors and change nothing; `live reconcile`
counts offered units."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sale_kit import ROOM, auth, client, confirm, figures, open_sale, reserve, token
from serve_kit import Served
from test_reconcile import run_reconcile
from websockets.asyncio.client import ClientConnection, connect

from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name


def waitlist(sale_id: int) -> str:
    return f"/api/sales/{sale_id}/waitlist"


@asynccontextmanager
async def watching(server: str, settings: Settings, user: str) -> AsyncIterator[ClientConnection]:
    url = server.replace("http", "ws") + f"/ws/rooms/{ROOM}?token={token(settings, user)}"
    async with connect(url) as ws:
        while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "welcome":
            pass
        yield ws


async def next_offer(ws: ClientConnection, within_s: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(within_s):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "direct" and frame["kind"] == "offer":
                return frame["data"]  # type: ignore[no-any-return]


async def test_join_only_when_sold_out_once_and_leave(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    sale = await open_sale(client, settings, stock=1)
    path = waitlist(sale["id"])
    early = await client.post(path, headers=auth(settings, "bob"))
    assert (early.status_code, early.json()["error"]) == (409, "not_sold_out")
    assert (await reserve(client, settings, sale["id"], "ann")).status_code == 201
    joined = await client.post(path, headers=auth(settings, "bob"))
    assert (joined.status_code, joined.json()) == (201, {"sale_id": sale["id"], "position": 1})
    assert (await client.post(path, headers=auth(settings, "cy"))).json()["position"] == 2
    twice = await client.post(path, headers=auth(settings, "bob"))
    assert (twice.status_code, twice.json()["error"]) == (409, "already_waiting")
    holder = await client.post(path, headers=auth(settings, "ann"))  # holds the limit already
    assert (holder.status_code, holder.json()["error"]) == (409, "limit")
    mine = await client.get(path, headers=auth(settings, "cy"))
    assert mine.json() == {"sale_id": sale["id"], "position": 2}
    left = await client.delete(path, headers=auth(settings, "bob"))
    assert (left.status_code, left.json()["state"]) == (200, "left")
    again = await client.delete(path, headers=auth(settings, "bob"))
    assert (again.status_code, again.json()["error"]) == (409, "not_waiting")
    assert (await client.get(path, headers=auth(settings, "cy"))).json()["position"] == 1
    assert (await client.get(path, headers=auth(settings, "bob"))).json()["position"] is None


async def test_bad_requests_get_typed_errors_and_change_nothing(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = await open_sale(client, settings, stock=1)
    assert (await reserve(client, settings, sale["id"], "ann")).status_code == 201
    path = waitlist(sale["id"])
    assert (await client.post(path, headers=auth(settings, "bob"))).status_code == 201
    lock = served.services.sales.lock
    before = await lock.check(str(sale["id"]))
    cases = [
        ("POST", waitlist(999_999), auth(settings, "cy"), 404, "not_found"),
        ("POST", "/api/sales/nope/waitlist", auth(settings, "cy"), 404, "not_found"),
        ("POST", path, auth(settings, "cy", room="elsewhere"), 403, "forbidden"),
        ("DELETE", path, auth(settings, "bob", room="elsewhere"), 403, "forbidden"),
        ("GET", path, auth(settings, "bob", room="elsewhere"), 403, "forbidden"),
        ("POST", path, {}, 401, "token_required"),
        ("DELETE", path, {}, 401, "token_required"),
        ("POST", path, auth(settings, "svc", Role.SERVICE), 403, "forbidden"),
        ("POST", path, auth(settings, "bob"), 409, "already_waiting"),
        ("DELETE", path, auth(settings, "cy"), 409, "not_waiting"),
    ]
    for method, url, headers, status, error in cases:
        answer = await client.request(method, url, headers=headers)
        assert (answer.status_code, answer.json()["error"]) == (status, error), (method, url)
    after = await lock.check(str(sale["id"]))
    assert before == after and after is not None and after.waiting == 1
    host = auth(settings, "host", Role.HOST)
    assert (await client.post(f"/api/sales/{sale['id']}/stop", headers=host)).status_code == 200
    ended = await client.post(path, headers=auth(settings, "cy"))
    assert (ended.status_code, ended.json()["error"]) == (409, "not_open")


async def test_a_cancelled_hold_is_offered_to_the_first_waiter(
    server: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    sale = await open_sale(client, settings, stock=1)
    held = await reserve(client, settings, sale["id"], "ann")
    path = waitlist(sale["id"])
    async with watching(server, settings, "bob") as bob, watching(server, settings, "cy") as cy:
        for user in ("bob", "cy"):
            assert (await client.post(path, headers=auth(settings, user))).status_code == 201
        gone = await client.delete(
            f"/api/reservations/{held.json()['id']}", headers=auth(settings, "ann")
        )
        assert gone.status_code == 200
        offer = await next_offer(bob)
        assert offer["sale_id"] == sale["id"] and offer["qty"] == 1
        assert offer["price_cents"] == 500 and offer["expires_at"] > 0
        numbers = await figures(client, settings, sale["id"])
        assert (numbers["remaining"], numbers["state"]) == (0, "sold_out")
        late = await reserve(client, settings, sale["id"], "dee")
        assert late.json()["error"] == "sold_out"  # the unit is bob's to take
        order = await confirm(client, settings, offer["reservation_id"], "bob")
        assert order.status_code == 201, order.text
        assert (order.json()["buyer"], order.json()["qty"]) == ("bob", 1)
        assert (await client.get(path, headers=auth(settings, "cy"))).json()["position"] == 1
        with pytest.raises(TimeoutError):  # nothing was freed for cy
            await next_offer(cy, within_s=0.5)
    reconciled = run_reconcile(settings, sale["id"])
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


async def test_a_lapsed_offer_goes_to_the_next_waiter(
    server: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    sale = await open_sale(client, settings, stock=1, hold_seconds=1)
    assert (await reserve(client, settings, sale["id"], "ann")).status_code == 201
    path = waitlist(sale["id"])
    async with watching(server, settings, "bob") as bob, watching(server, settings, "cy") as cy:
        for user in ("bob", "cy"):
            assert (await client.post(path, headers=auth(settings, user))).status_code == 201
        first = await next_offer(bob)  # ann's hold expired
        during = run_reconcile(settings, sale["id"])
        assert during.returncode == 0, during.stdout + during.stderr
        second = await next_offer(cy)  # bob let his lapse
        assert second["reservation_id"] != first["reservation_id"]
        lapsed = await confirm(client, settings, first["reservation_id"], "bob")
        assert (lapsed.status_code, lapsed.json()["error"]) == (409, "expired")
        assert (await confirm(client, settings, second["reservation_id"], "cy")).status_code == 201
    numbers = await figures(client, settings, sale["id"])
    assert (numbers["sold"], numbers["remaining"]) == (1, 0)
    reconciled = run_reconcile(settings, sale["id"])
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
