"""The auction routes (gateway/http_auctions.py) over HTTP on an app of their own, with the
edge's error handlers and real tokens: status codes and bodies of the API's contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from auction_kit import ROOM, Kit, kit
from serve_kit import TEST_SECRET
from starlette.applications import Starlette

from gateway.auth import Authenticator, mint
from gateway.errors import HANDLERS
from gateway.http_auctions import AuctionRoutes
from live.services import room_service
from live.settings import Settings
from rooms.actors import Role

__all__ = ["kit"]


def auth(sub: str, role: Role = Role.VIEWER) -> dict[str, str]:
    token = mint(TEST_SECRET, sub=sub, role=role, room=ROOM, ttl_s=600, name=sub.title())
    return {"authorization": f"Bearer {token}"}


HOST = auth("host", Role.HOST)


@pytest.fixture
async def http(kit: Kit, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    rooms = room_service(settings, kit.pg, kit.redis, "test")
    routes = AuctionRoutes(lambda: kit.service, lambda: rooms, Authenticator(TEST_SECRET)).routes()
    app = Starlette(routes=routes, exception_handlers=dict(HANDLERS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def _bid(
    http: httpx.AsyncClient, auction: int, user: str, key: str, **body: object
) -> httpx.Response:
    headers = {**auth(user), "idempotency-key": key}
    return await http.post(f"/api/auctions/{auction}/bids", json=body, headers=headers)


async def test_the_api_of_an_auction(http: httpx.AsyncClient, kit: Kit) -> None:
    created = await http.post(
        f"/api/rooms/{ROOM}/auctions",
        json={
            "product_id": kit.product_id,
            "start_cents": 1000,
            "increments": [[0, 100], [5000, 500]],
            "duration_s": 60,
            "snipe_window_s": 10,
            "max_extensions": 3,
            "reserve_cents": 1500,
        },
        headers=HOST,
    )
    assert created.status_code == 201, created.text
    auction = created.json()["id"]
    assert created.json()["state"] == "scheduled" and "reserve_cents" not in created.json()
    early = await _bid(http, auction, "ann", "k0", amount_cents=1000)
    assert (early.status_code, early.json()["error"]) == (409, "not_open")
    started = await http.post(f"/api/auctions/{auction}/start", headers=HOST)
    assert started.json()["state"] == "open"

    first = await _bid(http, auction, "ann", "k1", amount_cents=1000, max_cents=1200)
    assert first.status_code == 201
    assert {k: first.json()[k] for k in ("accepted", "price_cents", "leading")} == {
        "accepted": True,
        "price_cents": 1000,
        "leading": True,
    }
    assert first.json()["ends_at"] > 0
    low = await _bid(http, auction, "bob", "k1", amount_cents=1050)
    assert (low.status_code, low.json()["error"]) == (409, "too_low")
    own = await _bid(http, auction, "ann", "k2", amount_cents=1100)
    assert (own.status_code, own.json()["error"]) == (409, "own_bid")
    bad = await _bid(http, auction, "bob", "k2", amount_cents="1100")
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid")
    below = await _bid(http, auction, "bob", "k3", amount_cents=1300, max_cents=1200)
    assert (below.status_code, below.json()["error"]) == (422, "invalid")
    headers = {**HOST, "idempotency-key": "h"}
    host = await http.post(
        f"/api/auctions/{auction}/bids", json={"amount_cents": 9000}, headers=headers
    )
    assert (host.status_code, host.json()["error"]) == (403, "forbidden")
    won = await _bid(http, auction, "bob", "k4", amount_cents=1300, show_name=True)
    assert won.json()["leading"] and won.json()["price_cents"] == 1300

    view = (await http.get(f"/api/auctions/{auction}")).json()
    assert {
        k: view[k] for k in ("state", "price_cents", "leader", "extensions", "reserve_met")
    } == {
        "state": "open",
        "price_cents": 1300,
        "leader": "Bob",
        "extensions": 0,
        "reserve_met": False,
    }
    assert (await http.get(f"/api/auctions/{auction}/bids", headers=auth("ann"))).status_code == 403
    bids = (await http.get(f"/api/auctions/{auction}/bids", headers=HOST)).json()["bids"]
    assert [(b["bidder"], b["amount_cents"], b["proxy"]) for b in bids] == [
        ("ann", 1000, False),
        ("ann", 1200, True),
        ("bob", 1300, False),
    ]
    assert set(bids[0]) == {"seq", "bidder", "amount_cents", "accepted_at", "proxy"}

    stopped = await http.post(f"/api/auctions/{auction}/stop", headers=HOST)
    assert stopped.json()["state"] == "ended" and not stopped.json()["reserve_met"]
    late = await _bid(http, auction, "cy", "k1", amount_cents=99_000)
    assert (late.status_code, late.json()["error"]) == (409, "ended")
    offers = await http.get(f"/api/auctions/{auction}/offers", headers=auth("bob"))
    assert offers.json() == {"offers": []}  # below the reserve: nobody wins
    unknown = await http.get("/api/auctions/999999")
    assert unknown.status_code == 404
    body = {"product_id": kit.product_id, "increment_cents": 10}  # no start_cents, no duration
    missing = await http.post(f"/api/rooms/{ROOM}/auctions", json=body, headers=HOST)
    assert (missing.status_code, missing.json()["error"]) == (422, "invalid")


async def test_a_bid_while_the_book_is_restored_is_503_with_retry_after(
    http: httpx.AsyncClient, kit: Kit
) -> None:
    auction = await kit.open()
    assert (await _bid(http, auction, "ann", "a1", amount_cents=100)).status_code == 201
    await kit.redis.hset(kit.service.book.keys(auction).state, "run_id", "an-earlier-run")
    refused = await _bid(http, auction, "bob", "b1", amount_cents=110)
    assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
    assert float(refused.headers["retry-after"]) > 0
