"""Who may act, enforced on every route: the README's "who may do what" table, route by route
and actor by actor, over HTTP against the real app (the WebSocket's side: test_roles_ws.py).

Each route is called by the refused actors first: their calls must change nothing (the room's
log and the sale's figures stay as they were), then by the allowed ones, which must succeed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from edge_kit import (
    BUYER,
    GROUP_DEAL,
    ROOM_A,
    Who,
    World,
    actor_token,
    assert_json_error,
    bearer,
    check,
    client,
    http_routes,
    make_world,
    token,
)
from serve_kit import TEST_SECRET, Served

from gateway.share_codes import mint_share
from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name

W = Who
CODES = {401: "token_required", 403: "forbidden", 404: "not_found"}


def everyone(ok: int) -> dict[Who, int]:
    return dict.fromkeys(Who, ok)


def watchers() -> dict[Who, int]:
    """Anyone may watch (anonymous viewers too, by default); a token of another room may not."""
    return {**everyone(200), W.OTHER_HOST: 403, W.BUYER_ELSEWHERE: 403}


def signed_in(ok: int) -> dict[Who, int]:
    """Any signed-in person of the room: viewer, moderator or host (a service is no person)."""
    return {
        **everyone(ok),
        W.ANONYMOUS: 401,
        W.OTHER_HOST: 403,
        W.BUYER_ELSEWHERE: 403,
        W.SERVICE: 403,
    }


def staff(ok: int) -> dict[Who, int]:
    """A moderator or a host of the room."""
    return {**signed_in(ok), W.VIEWER: 403, W.OTHER_VIEWER: 403}


def hosts(ok: int) -> dict[Who, int]:
    """A host of the room: any host token of it."""
    return {**staff(ok), W.MODERATOR: 403}


def bidders(ok: int) -> dict[Who, int]:
    """A viewer of the room: its hosts and moderators may not bid (shill bidding)."""
    return {**signed_in(ok), W.MODERATOR: 403, W.HOST: 403, W.COHOST: 403}


def the_buyer(ok: int) -> dict[Who, int]:
    """Only the buyer (VIEWER) on their own hold: another room's token is refused (403), and
    anyone else of the room does not see the hold (404)."""
    return {**signed_in(404), W.VIEWER: ok}


@dataclass(frozen=True)
class Call:
    method: str
    # {room}, {sale}, {scheduled}, {hold}, {webhook}, {auction}, {scheduled_auction}, and of
    # group deals {group_sale}, {group} (its starter in it) and {joined_group} (the starter
    # and every signed-in person of the room in it)
    path: str
    body: dict[str, Any] | None = None  # "{product}", "{who}" and "{amount}" filled per call

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


SALE = {"stock": 10, "price_cents": 100, "limit_per_buyer": 1, "hold_seconds": 60}
HOOK = {"url": "http://hooks.invalid/{who}", "secret": "whsec-0123456789abcdef"}  # never resolves
AUCTION = {
    "start_cents": 100,
    "increment_cents": 10,
    "duration_s": 600,
    "snipe_window_s": 10,
    "max_extensions": 3,
}
SHARED = mint_share(TEST_SECRET, ROOM_A, BUYER)  # a share code of room A (the tests' secret)
TABLE: list[tuple[Call, dict[Who, int]]] = [
    (Call("PUT", "/api/rooms/{room}", {"title": "Room A"}), hosts(200)),
    (Call("GET", "/api/rooms/{room}"), watchers()),
    (Call("GET", "/api/rooms/{room}/products"), watchers()),
    (
        Call("POST", "/api/rooms/{room}/products", {"sku": "s", "title": "T", "price_cents": 1}),
        staff(201),
    ),
    (Call("POST", "/api/rooms/{room}/pin", {"product_id": "{product}"}), staff(200)),
    (Call("DELETE", "/api/rooms/{room}/pin"), staff(200)),
    (Call("POST", "/api/rooms/{room}/messages", {"text": "Hello"}), staff(201)),
    (Call("POST", "/api/rooms/{room}/comments", {"text": "Hi"}), signed_in(201)),
    (Call("DELETE", "/api/rooms/{room}/comments/{comment}"), staff(200)),
    (Call("PUT", "/api/rooms/{room}/mutes/{user}", {"seconds": 60}), staff(200)),
    (Call("DELETE", "/api/rooms/{room}/mutes/{user}"), staff(200)),
    (Call("PUT", "/api/rooms/{room}/slow-mode", {"seconds": 0}), staff(200)),
    (Call("POST", "/api/rooms/{room}/end"), hosts(200)),
    (Call("POST", "/api/rooms/{room}/sales", {**SALE, "product_id": "{product}"}), hosts(201)),
    (Call("POST", "/api/sales/{scheduled}/start"), hosts(200)),
    (Call("POST", "/api/sales/{sale}/stop"), hosts(200)),
    (Call("POST", "/api/sales/{sale}/stock", {"delta": 1}), {**hosts(200), W.SERVICE: 200}),
    (Call("GET", "/api/sales/{sale}"), staff(200)),
    (Call("POST", "/api/sales/{sale}/reservations", {"qty": 1}), signed_in(201)),
    (
        Call("POST", "/api/reservations/{hold}/confirm", {"payment_ref": "p"}),
        {**the_buyer(201), W.SERVICE: 201},  # a service confirms for the buyer: the same order
    ),
    (Call("DELETE", "/api/reservations/{hold}"), the_buyer(200)),
    (Call("POST", "/api/sales/{sold_out}/waitlist"), signed_in(201)),
    (Call("GET", "/api/sales/{sold_out}/waitlist"), signed_in(200)),  # the caller's place
    (Call("DELETE", "/api/sales/{waited}/waitlist"), signed_in(200)),
    (
        Call("POST", "/api/rooms/{room}/auctions", {**AUCTION, "product_id": "{product}"}),
        hosts(201),
    ),
    (Call("POST", "/api/auctions/{scheduled_auction}/start"), hosts(200)),
    (Call("POST", "/api/auctions/{auction}/stop"), hosts(200)),
    (Call("GET", "/api/auctions/{auction}"), watchers()),
    (Call("GET", "/api/auctions/{auction}/bids"), staff(200)),
    (Call("POST", "/api/auctions/{auction}/bids", {"amount_cents": "{amount}"}), bidders(201)),
    (Call("GET", "/api/auctions/{auction}/offers"), signed_in(200)),  # the caller's own
    (
        Call("POST", "/api/rooms/{room}/sales", {**GROUP_DEAL, "product_id": "{product}"}),
        hosts(201),
    ),
    (Call("POST", "/api/sales/{group_sale}/groups"), signed_in(201)),
    (Call("GET", "/api/sales/{group_sale}/groups"), watchers()),
    (Call("GET", "/api/groups/{group}"), watchers()),
    (Call("POST", "/api/groups/{group}/join"), signed_in(200)),
    (Call("POST", "/api/groups/{joined_group}/leave"), signed_in(200)),
    (Call("POST", "/api/rooms/{room}/webhooks", HOOK), hosts(201)),
    (Call("GET", "/api/rooms/{room}/webhooks"), hosts(200)),
    (Call("DELETE", "/api/rooms/{room}/webhooks/{webhook}"), hosts(200)),  # again: the same
    (Call("POST", "/api/rooms/{room}/share"), bidders(200)),  # a viewer of the room, as bidders
    (Call("POST", "/api/rooms/{room}/visits", {"share": SHARED}), watchers()),
    (Call("GET", "/api/rooms/{room}/referrals"), hosts(200)),
    (Call("PUT", "/api/rooms/{room}/referrals/rule", {"percent": 5}), hosts(200)),
    (Call("GET", "/watch/{room}"), everyone(200)),
    (Call("GET", "/host/{room}"), everyone(200)),
    (Call("GET", "/healthz"), everyone(200)),
    (Call("GET", "/readyz"), everyone(200)),
    (Call("GET", "/metrics"), everyone(200)),
]


def test_the_table_covers_every_route_of_the_app(served: Served) -> None:
    """A route added to the app without a row here fails this test (the WebSocket has tests of
    its own below; static files are not the room's)."""
    served_routes = {
        f"{method} {route.path}"
        for route in http_routes(served.app)
        for method in route.methods
        if method != "HEAD" and not route.path.startswith(("/ws/", "/static/"))
    }
    generic = {
        "{scheduled}": "{sale}",
        "{hold}": "{reservation}",
        "{scheduled_auction}": "{auction}",
        "{group_sale}": "{sale}",
        "{joined_group}": "{group}",
        "{sold_out}": "{sale}",
        "{waited}": "{sale}",
    }
    covered = set()
    for call, _ in TABLE:
        path = call.path
        for mine, theirs in generic.items():
            path = path.replace(mine, theirs)
        covered.add(f"{call.method} {path}")
    assert served_routes <= covered, sorted(served_routes - covered)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The room's webhook endpoints of these tests are on loopback (nobody listens there)."""
    return replace(settings, webhook_allow_private=True)


@dataclass
class Place:
    """The ids a call's path and body are filled in with."""

    world: World
    scheduled: int
    webhook: int
    auction: int  # open
    scheduled_auction: int
    joined_group: int  # 0 unless the call names it
    sold_out: int = 0  # a sold-out sale, with every signed-in person waiting in `{waited}`

    def fill(self, text: str) -> str:
        return (
            text.replace("{room}", ROOM_A)
            .replace("{group_sale}", str(self.world.group_sales[ROOM_A]))
            .replace("{group}", str(self.world.groups[ROOM_A]))
            .replace("{joined_group}", str(self.joined_group))
            .replace("{sold_out}", str(self.sold_out))
            .replace("{waited}", str(self.sold_out))
            .replace("{sale}", str(self.world.sales[ROOM_A]))
            .replace("{scheduled}", str(self.scheduled))
            .replace("{hold}", self.world.holds[0])
            .replace("{webhook}", str(self.webhook))
            .replace("{scheduled_auction}", str(self.scheduled_auction))
            .replace("{auction}", str(self.auction))
            .replace("{comment}", "c-1")
            .replace("{user}", "someone")
        )

    def body(self, body: dict[str, Any] | None, who: Who) -> dict[str, Any] | None:
        if body is None:
            return None
        product = self.world.products[ROOM_A]
        amount = 1000 + 100 * list(Who).index(who)  # each bidder above the one before
        return {
            k: product
            if v == "{product}"
            else amount
            if v == "{amount}"
            else v.replace("{who}", who.value)
            if isinstance(v, str)
            else v
            for k, v in body.items()
        }


async def joined_group(client: httpx.AsyncClient, settings: Settings, world: World) -> int:
    """A group of room A's group deal with every signed-in person of the room in it."""
    starting = bearer(token(settings, "starter-2", Role.VIEWER, ROOM_A))
    path = f"/api/sales/{world.group_sales[ROOM_A]}/groups"
    group: int = (await check(await client.post(path, headers=starting), 201))["id"]
    for who in (W.VIEWER, W.OTHER_VIEWER, W.MODERATOR, W.HOST, W.COHOST):
        joining = bearer(actor_token(settings, who))
        await check(await client.post(f"/api/groups/{group}/join", headers=joining), 200)
    return group


async def sold_out_sale(
    client: httpx.AsyncClient, settings: Settings, world: World, join: bool
) -> int:
    """A sale of room A whose one unit is held (its waitlist open), with every signed-in
    person of the room on the waitlist when `join`."""
    host = bearer(actor_token(settings, Who.HOST))
    body = {**SALE, "stock": 1, "product_id": world.products[ROOM_A]}
    made = await client.post(f"/api/rooms/{ROOM_A}/sales", json=body, headers=host)
    sale: int = (await check(made, 201))["id"]
    await check(await client.post(f"/api/sales/{sale}/start", headers=host), 200)
    holder = {**bearer(token(settings, "holder", Role.VIEWER, ROOM_A)), "idempotency-key": "k"}
    await check(await client.post(f"/api/sales/{sale}/reservations", headers=holder), 201)
    for who in (W.VIEWER, W.OTHER_VIEWER, W.MODERATOR, W.HOST, W.COHOST) if join else ():
        joining = bearer(actor_token(settings, who))
        await check(await client.post(f"/api/sales/{sale}/waitlist", headers=joining), 201)
    return sale


async def observed(client: httpx.AsyncClient, settings: Settings, world: World) -> Any:
    """What a refused call must not change: the room's log position, the sale's state, stock,
    holds and orders, and the room's webhooks."""
    host = bearer(actor_token(settings, Who.HOST))
    room = await check(await client.get(f"/api/rooms/{ROOM_A}", headers=host), 200)
    sale = await check(await client.get(f"/api/sales/{world.sales[ROOM_A]}", headers=host), 200)
    hooks = await check(await client.get(f"/api/rooms/{ROOM_A}/webhooks", headers=host), 200)
    keys = ("state", "stock", "remaining", "held", "confirming", "sold", "orders")
    return (room["seq"], room["epoch"], {k: sale[k] for k in keys}, hooks)


async def settled(client: httpx.AsyncClient, settings: Settings, world: World) -> Any:
    """`observed` once the stock announcements of the world's holds went out (they are
    published by an interval loop, after the reservations)."""
    last = await observed(client, settings, world)
    for _ in range(50):
        await asyncio.sleep(0.3)
        now = await observed(client, settings, world)
        if now == last:
            return now
        last = now
    raise AssertionError("the room's log never settled")


@pytest.mark.parametrize(("call", "expected"), TABLE, ids=[call.id for call, _ in TABLE])
async def test_who_may_call_each_route(
    client: httpx.AsyncClient, settings: Settings, call: Call, expected: dict[Who, int]
) -> None:
    world = await make_world(client, settings)
    host = bearer(actor_token(settings, Who.HOST))
    scheduled = await check(
        await client.post(
            f"/api/rooms/{ROOM_A}/sales",
            json={**SALE, "product_id": world.products[ROOM_A]},
            headers=host,
        ),
        201,
    )
    hook = {"url": "http://hooks.invalid/first", "secret": HOOK["secret"]}
    webhook = await check(
        await client.post(f"/api/rooms/{ROOM_A}/webhooks", json=hook, headers=host), 201
    )
    auctions = [
        await check(
            await client.post(
                f"/api/rooms/{ROOM_A}/auctions",
                json={**AUCTION, "product_id": world.products[ROOM_A]},
                headers=host,
            ),
            201,
        )
        for _ in range(2)
    ]
    await check(await client.post(f"/api/auctions/{auctions[0]['id']}/start", headers=host), 200)
    joined = await joined_group(client, settings, world) if "{joined_group}" in call.path else 0
    place = Place(
        world, scheduled["id"], webhook["id"], auctions[0]["id"], auctions[1]["id"], joined
    )
    if "{sold_out}" in call.path or "{waited}" in call.path:
        place.sold_out = await sold_out_sale(client, settings, world, "{waited}" in call.path)
    assert set(expected) == set(Who)
    refused = [who for who in Who if expected[who] >= 300]
    allowed = [who for who in Who if expected[who] < 300]
    before = await settled(client, settings, world)
    for who in [*refused, *allowed]:
        if allowed and who is allowed[0]:  # every refused call is made
            assert await observed(client, settings, world) == before, "a refused call acted"
        response = await client.request(
            call.method,
            place.fill(call.path),
            json=place.body(call.body, who),
            headers={
                **bearer(actor_token(settings, who)),
                "idempotency-key": f"key-{who.value}",
            },
        )
        context = f"{call.id} as {who.value}: {response.status_code} {response.text[:300]}"
        assert response.status_code == expected[who], context
        if expected[who] >= 300:
            assert assert_json_error(response, context)["error"] == CODES[expected[who]], context
    if not allowed:
        assert await observed(client, settings, world) == before
