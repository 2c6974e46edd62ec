"""Share links, end to end on the real app: a viewer's signed share code; visits recorded when a
viewer connects with it (first sharer wins, never oneself, anonymous viewers counted but never
credited, a bad code ignored and the viewer still watching); orders of a flash sale (reserve and
confirm through the service) carrying the referrer in PostgreSQL and in the `order.created`
webhook; the host's report and reward rule; and codes that are not this room's refused with
`invalid_share`, changing nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sale_kit import ROOM, auth, client, confirm, db, open_sale, reserve, token
from serve_kit import TEST_SECRET, serve_app
from webhook_kit import delivering, receiving
from websockets.asyncio.client import connect

from flash_sales.referrals import reward_cents
from gateway.auth import TokenError, mint, verify
from gateway.share_codes import mint_share, sharer_of
from live.settings import Settings
from rooms.actors import Role
from rooms.errors import Invalid

__all__ = ["client"]  # the fixture, used by name

OTHER_ROOM = "other-shop"


# -- codes, without a server ----------------------------------------------------------------------


def test_a_code_names_its_sharer_in_its_room_only() -> None:
    code = mint_share(TEST_SECRET, ROOM, "ann")
    assert sharer_of(TEST_SECRET, ROOM, code) == "ann"
    with pytest.raises(Invalid) as other_room:
        sharer_of(TEST_SECRET, OTHER_ROOM, code)
    assert other_room.value.code == "invalid_share"
    for bad in (
        mint_share("another-secret-0123456789abcdef0123456789", ROOM, "ann"),
        code[:-2] + ("AA" if not code.endswith("AA") else "BB"),  # a tampered signature
        mint(TEST_SECRET, sub="ann", role=Role.VIEWER, room=ROOM),  # a token is no share code
        jwt.encode({"typ": "share", "room": ROOM, "by": ""}, TEST_SECRET, algorithm="HS256"),
        jwt.encode({"typ": "token", "room": ROOM, "by": "ann"}, TEST_SECRET, algorithm="HS256"),
        jwt.encode({"typ": "share", "room": ROOM, "by": 7}, TEST_SECRET, algorithm="HS256"),
    ):
        with pytest.raises(Invalid) as refused:
            sharer_of(TEST_SECRET, ROOM, bad)
        assert refused.value.code == "invalid_share"
    with pytest.raises(TokenError):  # and a share code is no token
        verify(TEST_SECRET, code)


@given(
    st.one_of(
        st.text(max_size=1200),
        st.sampled_from(["a.b.c", "..", "e30.e30.", "eyJhbGciOiJub25lIn0.e30."]),
        st.builds(
            lambda payload: jwt.encode(payload, TEST_SECRET, algorithm="HS256"),
            st.dictionaries(
                st.sampled_from(["typ", "room", "by", "exp", "sub"]),
                st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just("share")),
            ),
        ),
    )
)
def test_any_code_is_a_sharer_or_a_typed_refusal(code: str) -> None:
    try:
        sharer = sharer_of(TEST_SECRET, ROOM, code)
    except Invalid as refused:
        assert refused.code == "invalid_share"
    else:
        assert isinstance(sharer, str) and sharer


@given(st.integers(min_value=0, max_value=2**62), st.integers(min_value=0, max_value=100))
def test_the_reward_is_a_percent_rounded_down(revenue: int, percent: int) -> None:
    reward = reward_cents(revenue, percent)
    assert 0 <= reward <= revenue
    assert reward * 100 <= revenue * percent < (reward + 1) * 100
    assert reward_cents(revenue, None) == 0


# -- through the service ---------------------------------------------------------------------


async def share(client: httpx.AsyncClient, settings: Settings, sharer: str) -> str:
    response = await client.post(f"/api/rooms/{ROOM}/share", headers=auth(settings, sharer))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["link"] == f"/watch/{ROOM}?share={body['code']}"
    return str(body["code"])


async def watch(
    server: str, settings: Settings, viewer: str | None, code: str, **more: str
) -> None:
    """A viewer opens the room's WebSocket with a share code, until its welcome (a visit is
    recorded before it), then leaves."""
    params = {"share": code, **more}
    if viewer is not None:
        params["token"] = token(settings, viewer)
    url = f"{server.replace('http', 'ws', 1)}/ws/rooms/{ROOM}?{urlencode(params)}"
    async with connect(url, open_timeout=10) as ws:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "welcome":
                return


async def buy(client: httpx.AsyncClient, settings: Settings, sale_id: int, buyer: str) -> int:
    held = await reserve(client, settings, sale_id, buyer, key=f"k-{buyer}")
    assert held.status_code == 201, held.text
    order = await confirm(client, settings, held.json()["id"], buyer)
    assert order.status_code == 201, order.text
    return int(order.json()["id"])


async def referrers(settings: Settings) -> dict[str, str | None]:
    conn = await db(settings)
    try:
        rows = await conn.fetch("SELECT buyer_id, referrer_id FROM orders")
    finally:
        await conn.close()
    return {r["buyer_id"]: r["referrer_id"] for r in rows}


async def report(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    response = await client.get(
        f"/api/rooms/{ROOM}/referrals", headers=auth(settings, "host", Role.HOST)
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_orders_are_attributed_to_the_first_sharer_never_to_oneself(
    client: httpx.AsyncClient, server: str, settings: Settings
) -> None:
    sale = await open_sale(client, settings, stock=10)
    ann, cy = await share(client, settings, "ann"), await share(client, settings, "cy")
    assert await share(client, settings, "ann") == ann  # sharing again: the same code
    await watch(server, settings, "bob", ann)
    await watch(server, settings, "bob", cy)  # bob came through ann's link first
    await watch(server, settings, "ann", ann)  # ann's own link: no visit
    await watch(server, settings, "cy", ann)  # cy came through ann's
    await watch(server, settings, "dee", "not-a-code")  # ignored: dee still watches
    await watch(server, settings, "eve", mint_share(TEST_SECRET, OTHER_ROOM, "ann"))
    await watch(server, settings, None, cy)  # anonymous: counted, never credited
    await watch(server, settings, None, cy, since="0", epoch="e")  # a resume: no new visit
    for buyer in ("bob", "ann", "cy", "dee", "eve", "fay"):
        await buy(client, settings, sale["id"], buyer)
    assert await referrers(settings) == {
        "bob": "ann",
        "ann": None,
        "cy": "ann",
        "dee": None,
        "eve": None,
        "fay": None,
    }
    found = await report(client, settings)
    assert found["rule"] is None
    assert found["sharers"] == [
        {
            "sharer": "ann",
            "visits": 2,
            "anonymous_visits": 0,
            "orders": 2,
            "revenue_cents": 1000,
            "reward_cents": 0,
        },
        {
            "sharer": "cy",
            "visits": 1,
            "anonymous_visits": 1,
            "orders": 0,
            "revenue_cents": 0,
            "reward_cents": 0,
        },
    ]


async def test_the_report_pays_the_rule_in_cents_rounded_down(
    client: httpx.AsyncClient, server: str, settings: Settings
) -> None:
    host = auth(settings, "host", Role.HOST)
    await client.put(f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=host)
    product = await client.post(
        f"/api/rooms/{ROOM}/products",
        json={"sku": "mug", "title": "Mug", "price_cents": 999},
        headers=host,
    )
    sale = await client.post(
        f"/api/rooms/{ROOM}/sales",
        json={
            "product_id": product.json()["id"],
            "stock": 10,
            "price_cents": 999,
            "limit_per_buyer": 3,
            "hold_seconds": 60,
        },
        headers=host,
    )
    sale_id = sale.json()["id"]
    await client.post(f"/api/sales/{sale_id}/start", headers=host)
    code = await share(client, settings, "ann")
    await watch(server, settings, "bob", code)
    held = await reserve(client, settings, sale_id, "bob", key="k", qty=3)
    assert (await confirm(client, settings, held.json()["id"], "bob")).status_code == 201
    rule = await client.put(f"/api/rooms/{ROOM}/referrals/rule", json={"percent": 15}, headers=host)
    assert rule.json() == {"room": ROOM, "rule": {"percent": 15}}
    found = await report(client, settings)
    assert found["rule"] == {"percent": 15}
    (ann,) = found["sharers"]
    assert (ann["orders"], ann["revenue_cents"], ann["reward_cents"]) == (1, 2997, 449)  # 449.55


async def test_bad_input_gets_a_typed_error_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    host = auth(settings, "host", Role.HOST)
    await open_sale(client, settings, stock=1)
    await share(client, settings, "ann")
    await client.put(f"/api/rooms/{ROOM}/referrals/rule", json={"percent": 10}, headers=host)
    before = await report(client, settings)
    for code in (
        "x",
        "",
        "a.b.c",
        mint_share(TEST_SECRET, OTHER_ROOM, "ann"),
        mint_share("another-secret-0123456789abcdef0123456789", ROOM, "ann"),
    ):
        response = await client.post(
            f"/api/rooms/{ROOM}/visits", json={"share": code}, headers=auth(settings, "bob")
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == ("invalid" if code == "" else "invalid_share")
    for percent in (-1, 101, 1.5, "10", None, True):
        response = await client.put(
            f"/api/rooms/{ROOM}/referrals/rule", json={"percent": percent}, headers=host
        )
        assert response.status_code == 422 and response.json()["error"] == "invalid"
    assert await report(client, settings) == before


async def test_a_visit_over_http_and_who_may_share(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await open_sale(client, settings, stock=1)
    code = await share(client, settings, "ann")
    for who, status in (
        (auth(settings, "host", Role.HOST), 403),
        (auth(settings, "mod", Role.MODERATOR), 403),
        (auth(settings, "ann", room=OTHER_ROOM), 403),
        ({}, 401),
    ):
        response = await client.post(f"/api/rooms/{ROOM}/share", headers=who)
        assert response.status_code == status, response.text
    visits = f"/api/rooms/{ROOM}/visits"
    first = await client.post(visits, json={"share": code}, headers=auth(settings, "bob"))
    again = await client.post(visits, json={"share": code}, headers=auth(settings, "bob"))
    anonymous = await client.post(visits, json={"share": code})
    assert [r.json() for r in (first, again, anonymous)] == [
        {"recorded": True},
        {"recorded": False},
        {"recorded": True},
    ]
    (ann,) = (await report(client, settings))["sharers"]
    assert (ann["visits"], ann["anonymous_visits"]) == (2, 1)


async def test_the_order_created_webhook_carries_the_referrer(settings: Settings) -> None:
    async with receiving() as receiver, serve_app(delivering(settings, receiver.url)) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            sale = await open_sale(http, settings, stock=5)
            code = await share(http, settings, "ann")
            await watch(served.url, settings, "bob", code)
            await buy(http, settings, sale["id"], "bob")
            await buy(http, settings, sale["id"], "cy")

            def orders() -> dict[str, Any]:
                return {
                    g.event["data"]["order"]["buyer"]: g.event["data"]["order"]
                    for g in receiver.got
                    if g.event["type"] == "order.created"
                }

            await receiver.until(lambda: len(orders()) == 2, "both orders' events")
            assert orders()["bob"]["referrer_id"] == "ann"
            assert orders()["cy"]["referrer_id"] is None
