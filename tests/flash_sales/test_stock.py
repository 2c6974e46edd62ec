"""Stock changed from outside (`POST /api/sales/{sale}/stock`) by the host and a service: in Redis
and PostgreSQL at once, once per request id, never below what is sold, held or being confirmed;
racing reservations; stuck between the stores; repaired from PostgreSQL. And a service that
confirms a buyer's hold for them."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sale_kit import ROOM, auth, client, confirm, db, figures, open_sale, reserve
from serve_kit import Served
from test_reconcile import run_reconcile
from webhook_kit import outbox

from flash_sales.model import LIVE_STATES
from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name


async def change(
    client: httpx.AsyncClient,
    settings: Settings,
    sale: int,
    delta: Any,
    key: str | None,
    who: Role = Role.SERVICE,
    room: str = ROOM,
) -> httpx.Response:
    headers = auth(settings, "erp" if who is Role.SERVICE else f"{who.value}-1", who, room)
    if key is not None:
        headers["idempotency-key"] = key
    return await client.post(f"/api/sales/{sale}/stock", json={"delta": delta}, headers=headers)


async def stores(served: Served, sale: int) -> tuple[int, int, int]:
    """(PostgreSQL's stock, Redis's stock, PostgreSQL's sold), Redis checked whole."""
    sales = served.services.sales
    report = await sales.lock.check(str(sale))
    assert report is not None and report.ok, report
    assert report.stock_changes_pending == 0, report
    row = await sales.store.get(sale)
    assert row is not None
    return row.stock, report.stock, row.sold


async def stock_events(settings: Settings) -> list[dict[str, Any]]:
    return [e for e in await outbox(settings) if e["type"] == "sale.stock_changed"]


async def test_the_host_and_a_service_change_a_running_sales_stock(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = (await open_sale(client, settings, stock=10, limit=2))["id"]
    added = await change(client, settings, sale, 5, "erp-1")
    assert added.status_code == 200, added.text
    assert added.json() == {
        "sale_id": sale,
        "request_id": "erp-1",
        "delta": 5,
        "stock": 15,
        "sold": 0,
        "remaining": 15,
    }
    replayed = await change(client, settings, sale, 5, "erp-1")  # a retry: applied once
    assert (replayed.status_code, replayed.json()["stock"]) == (200, 15)
    reused = await change(client, settings, sale, 4, "erp-1")
    assert (reused.status_code, reused.json()["error"]) == (409, "conflict")
    taken = await change(client, settings, sale, -3, "host-1", Role.HOST)
    assert (taken.status_code, taken.json()["stock"]) == (200, 12)
    assert await stores(served, sale) == (12, 12, 0)
    assert [e["seq"] for e in await stock_events(settings)] == [2, 3]  # after sale.started
    # the room hears of it: its snapshot's stock part, from a `stock` event
    async with asyncio.timeout(10):
        while (  # noqa: ASYNC110 (a condition in another server: no event to wait on)
            ((await client.get(f"/api/rooms/{ROOM}")).json()["stock"] or {}).get("stock") != 12
        ):
            await asyncio.sleep(0.05)
    # down to exactly what is sold and held
    ann = (await reserve(client, settings, sale, "ann", qty=2)).json()["id"]
    assert (await confirm(client, settings, ann, "ann")).status_code == 201
    await reserve(client, settings, sale, "bob")
    to_floor = await change(client, settings, sale, -9, "erp-2")
    assert to_floor.json() == {**to_floor.json(), "stock": 3, "sold": 2, "remaining": 0}
    assert (await figures(client, settings, sale))["state"] == "sold_out"
    below = await change(client, settings, sale, -1, "erp-3")
    assert (below.status_code, below.json()["error"]) == (409, "too_low")
    assert "(3)" in below.json()["detail"]
    again = await change(client, settings, sale, 2, "erp-4")
    assert (again.status_code, again.json()["remaining"]) == (200, 2)
    assert (await figures(client, settings, sale))["state"] == "open"
    assert await stores(served, sale) == (5, 5, 2)


async def test_bad_stock_changes_change_nothing(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = (await open_sale(client, settings, stock=4))["id"]
    await reserve(client, settings, sale, "ann")
    before = await stores(served, sale)
    cases: list[tuple[int, Any, str | None, Role, str, int, str]] = [
        (999999, 1, "k", Role.SERVICE, ROOM, 404, "not_found"),
        (sale, 1, "k", Role.VIEWER, ROOM, 403, "forbidden"),
        (sale, 1, "k", Role.MODERATOR, ROOM, 403, "forbidden"),
        (sale, 1, "k", Role.SERVICE, "elsewhere", 403, "forbidden"),
        (sale, 1, "k", Role.HOST, "elsewhere", 403, "forbidden"),
        (sale, 1, None, Role.SERVICE, ROOM, 422, "invalid"),
        (sale, -4, "k", Role.SERVICE, ROOM, 409, "too_low"),  # one of the 4 is held
    ]
    for bad in ["1", 1.0, 1.5, True, None, [1], {"n": 1}, 0, 10**6 + 1, -(10**6) - 1, 2**63]:
        cases.append((sale, bad, "k", Role.SERVICE, ROOM, 422, "invalid"))
    cases.append((sale, 10**6, "k", Role.SERVICE, ROOM, 422, "invalid"))  # above the maximum
    for sale_id, delta, key, who, room, status, error in cases:
        response = await change(client, settings, sale_id, delta, key, who, room)
        assert (response.status_code, response.json()["error"]) == (status, error), (
            delta,
            who,
            response.text,
        )
    anonymous = await client.post(f"/api/sales/{sale}/stock", json={"delta": 1})
    assert anonymous.status_code == 401
    for raw in (b"{", b"[]", b"", b'{"delta": 1e400}'):
        response = await client.post(
            f"/api/sales/{sale}/stock",
            content=raw,
            headers={**auth(settings, "erp", Role.SERVICE), "idempotency-key": "k"},
        )
        assert response.status_code in (400, 422), (raw, response.text)
    host = auth(settings, "host", Role.HOST)
    assert (await client.post(f"/api/sales/{sale}/stop", headers=host)).status_code == 200
    ended = await change(client, settings, sale, 1, "k")
    assert (ended.status_code, ended.json()["error"]) == (409, "ended")
    assert await stores(served, sale) == before
    assert await stock_events(settings) == []
    conn = await db(settings)
    try:
        assert await conn.fetchval("SELECT count(*) FROM stock_changes") == 0
    finally:
        await conn.close()


async def test_a_scheduled_sale_opens_with_its_changed_stock(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    host = auth(settings, "host", Role.HOST)
    await client.put(f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=host)
    product = await client.post(
        f"/api/rooms/{ROOM}/products",
        json={"sku": "cup", "title": "Cup", "price_cents": 900},
        headers=host,
    )
    made = await client.post(
        f"/api/rooms/{ROOM}/sales",
        json={"product_id": product.json()["id"], "stock": 5, "price_cents": 500},
        headers=host,
    )
    sale = made.json()["id"]
    added = await change(client, settings, sale, 3, "s-1")
    assert (added.status_code, added.json()["stock"], added.json()["remaining"]) == (200, 8, 8)
    assert (await change(client, settings, sale, 3, "s-1")).json()["stock"] == 8
    below = await change(client, settings, sale, -9, "s-2")
    assert (below.status_code, below.json()["error"]) == (409, "too_low")
    assert (await client.post(f"/api/sales/{sale}/start", headers=host)).json()["stock"] == 8
    assert await stores(served, sale) == (8, 8, 0)


async def test_a_retried_change_is_never_applied_twice_by_a_pool_loaded_since(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    """A change decided while the sale was scheduled, retried once it opened; a change decided
    while it ran, retried after Redis lost the pool and a repair reloaded it: each is in the
    stock the pool was loaded with, and a retry must not add it again (every paid confirm of
    what was held then gets its order)."""
    host = auth(settings, "host", Role.HOST)
    await client.put(f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=host)
    product = await client.post(
        f"/api/rooms/{ROOM}/products",
        json={"sku": "cup", "title": "Cup", "price_cents": 900},
        headers=host,
    )
    made = await client.post(
        f"/api/rooms/{ROOM}/sales",
        json={"product_id": product.json()["id"], "stock": 5, "price_cents": 500},
        headers=host,
    )
    sale = made.json()["id"]
    assert (await change(client, settings, sale, 3, "s-1")).json()["stock"] == 8
    assert (await client.post(f"/api/sales/{sale}/start", headers=host)).json()["stock"] == 8
    retried = await change(client, settings, sale, 3, "s-1")
    assert (retried.status_code, retried.json()["stock"]) == (200, 8), retried.text
    assert await stores(served, sale) == (8, 8, 0)
    assert (await change(client, settings, sale, 2, "r-1")).json()["stock"] == 10
    sales = served.services.sales
    await served.services.redis.delete(*sales.lock.keys(str(sale)).all)  # Redis lost the pool
    fresh = await sales.store.get(sale)
    assert fresh is not None and await sales.repair.repair(fresh, "missing")
    for key, delta, stock_after in (("r-1", 2, 10), ("s-1", 3, 8)):
        again = await change(client, settings, sale, delta, key)
        assert (again.status_code, again.json()["stock"]) == (200, stock_after), again.text
    sales.maintenance.stuck_confirm_ms = 0
    await sales.maintenance.recover_stock_changes()  # nothing pending that could apply again
    assert await stores(served, sale) == (10, 10, 0)
    holds = []
    for n in range(11):
        held = await reserve(client, settings, sale, f"b{n}", key=f"k{n}")
        holds.append(held)
    assert [h.status_code for h in holds] == [201] * 10 + [409]
    for n, held in enumerate(holds[:10]):
        paid = await confirm(client, settings, held.json()["id"], f"b{n}")
        assert paid.status_code == 201, paid.text
    assert await stores(served, sale) == (10, 10, 10)


async def test_a_change_redis_lost_before_postgres_applied_it_repairs_the_pool(
    client: httpx.AsyncClient,
    settings: Settings,
    served: Served,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis goes back in time between a change's Redis step and PostgreSQL's (its record and
    the units it took are gone): PostgreSQL applies the change, and its call repairs the pool
    from PostgreSQL at once instead of leaving Redis above it."""
    sale = (await open_sale(client, settings, stock=10))["id"]
    sales = served.services.sales
    keys = sales.lock.keys(str(sale))
    applies = sales.store.change_stock

    async def after_a_rollback(*args: Any) -> Any:
        await served.services.redis.hdel(keys.changes, "lost-1")  # as before the change began
        await served.services.redis.hincrby(keys.meta, "stock", 5)
        await served.services.redis.hincrby(keys.meta, "remaining", 5)
        await served.services.redis.hincrby(keys.meta, "changes_pending", -1)
        return await applies(*args)

    monkeypatch.setattr(sales.store, "change_stock", after_a_rollback)
    taken = await change(client, settings, sale, -5, "lost-1")
    assert (taken.status_code, taken.json()["stock"]) == (200, 5), taken.text
    monkeypatch.undo()
    assert await stores(served, sale) == (5, 5, 0)


async def test_stock_changes_race_reservations(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = (await open_sale(client, settings, stock=40, limit=3))["id"]
    rng = random.Random(14)
    deltas = [rng.choice([-4, -2, -1, 1, 2, 5]) for _ in range(40)]

    async def buyer(n: int) -> None:
        held = await reserve(client, settings, sale, f"b{n}", key=f"k{n}", qty=1 + n % 2)
        if held.status_code == 201 and n % 3:
            assert (await confirm(client, settings, held.json()["id"], f"b{n}")).status_code in (
                201,
                409,
            )

    async def changer(n: int, delta: int) -> int:
        response = await change(client, settings, sale, delta, f"c{n}")
        assert response.status_code in (200, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"] == "too_low", response.text
        return delta if response.status_code == 200 else 0

    results = await asyncio.gather(
        *(buyer(n) for n in range(60)), *(changer(n, d) for n, d in enumerate(deltas))
    )
    applied = sum(r for r in results if isinstance(r, int))
    pg_stock, redis_stock, sold = await stores(served, sale)
    assert pg_stock == redis_stock == 40 + applied
    assert sold <= pg_stock
    numbers = await figures(client, settings, sale)
    assert numbers["held"] + numbers["confirming"] + sold <= pg_stock
    assert len(await stock_events(settings)) == sum(1 for r in results if r)
    report = run_reconcile(settings, sale)
    assert report.returncode == 0, report.stdout + report.stderr


async def test_a_change_stuck_between_the_stores_ends_as_postgres_decides(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = (await open_sale(client, settings, stock=10))["id"]
    sales = served.services.sales
    pool = str(sale)
    # its caller died after Redis took 3 out: voided, the 3 come back
    assert (await sales.lock.adjust_stock(pool, "died-1", -3)).stock == 7
    # its caller died after PostgreSQL applied +4: applied in Redis too
    assert (await sales.lock.adjust_stock(pool, "died-2", 4)).ok
    assert (await sales.store.change_stock(sale, "died-2", 4, LIVE_STATES)).outcome == "applied"
    snap = await sales.lock.snapshot(pool)
    assert snap is not None and (snap.stock, snap.stock_changes_pending) == (7, 2)
    await sales.maintenance.check_pools()  # no repair of a pool with changes in flight
    sales.maintenance.stuck_confirm_ms = 0
    await sales.maintenance.recover_stock_changes()
    assert await stores(served, sale) == (14, 14, 0)
    late = await change(client, settings, sale, -3, "died-1")  # the caller, retrying
    assert (late.status_code, late.json()["error"]) == (409, "conflict")
    assert (await change(client, settings, sale, 4, "died-2")).json()["stock"] == 14
    assert run_reconcile(settings, sale).returncode == 0


async def test_a_repair_gives_the_pool_postgres_stock(
    client: httpx.AsyncClient, settings: Settings, served: Served
) -> None:
    sale = (await open_sale(client, settings, stock=10))["id"]
    sales = served.services.sales
    assert (await change(client, settings, sale, 6, "up")).json()["stock"] == 16
    ann = (await reserve(client, settings, sale, "ann")).json()["id"]
    assert (await confirm(client, settings, ann, "ann")).status_code == 201
    assert (await sales.lock.adjust_stock(str(sale), "in-flight", -2)).ok  # its caller is slow
    await served.services.redis.delete(*sales.lock.keys(str(sale)).all)  # Redis lost the pool
    assert (await reserve(client, settings, sale, "bob")).status_code == 201  # repaired first
    assert await stores(served, sale) == (16, 16, 1)
    numbers = await figures(client, settings, sale)
    assert (numbers["remaining"], numbers["held"]) == (14, 1)
    # a change whose Redis step the repair never saw: PostgreSQL then Redis decide it again
    assert (await change(client, settings, sale, -2, "in-flight")).json()["stock"] == 14
    assert await stores(served, sale) == (14, 14, 1)
    # the stock of a stale pool (Redis restarted, say) is PostgreSQL's after its repair
    conn = await db(settings)
    try:
        await conn.execute("UPDATE sales SET stock = stock + 1 WHERE id = $1", sale)
    finally:
        await conn.close()
    fresh = await sales.store.get(sale)
    assert fresh is not None and await sales.repair.repair(fresh, "stale")
    assert await stores(served, sale) == (15, 15, 1)


async def test_a_service_confirms_a_buyers_hold_for_them(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    sale = (await open_sale(client, settings, stock=3))["id"]
    hold = (await reserve(client, settings, sale, "ann")).json()["id"]
    path = f"/api/reservations/{hold}/confirm"
    service = auth(settings, "payments", Role.SERVICE)
    refused = [
        (auth(settings, "payments", Role.SERVICE, "elsewhere"), 403),
        (auth(settings, "bob"), 404),  # another buyer does not see ann's hold
        (auth(settings, "host", Role.HOST), 404),
    ]
    for headers, status in refused:
        response = await client.post(path, json={"payment_ref": "psp-1"}, headers=headers)
        assert response.status_code == status, response.text
    cancel = await client.delete(f"/api/reservations/{hold}", headers=service)
    assert cancel.status_code == 403  # a service confirms; it does not cancel
    first = await client.post(
        path, json={"payment_ref": "psp-1", "show_name": True}, headers=service
    )
    assert first.status_code == 201, first.text
    order = first.json()
    assert (order["buyer"], order["payment_ref"], order["reservation_id"]) == ("ann", "psp-1", hold)
    retried = await client.post(path, json={"payment_ref": "psp-1"}, headers=service)
    assert (retried.status_code, retried.json()["id"]) == (201, order["id"])
    ann = auth(settings, "ann")
    by_buyer = await client.post(path, json={"payment_ref": "psp-1"}, headers=ann)
    assert (by_buyer.status_code, by_buyer.json()["id"]) == (201, order["id"])
    for headers in (service, ann):  # another payment is no retry of this one
        other = await client.post(path, json={"payment_ref": "psp-2"}, headers=headers)
        assert (other.status_code, other.json()["error"]) == (409, "conflict"), other.text
    numbers = await figures(client, settings, sale)
    assert (numbers["sold"], numbers["orders"], numbers["held"]) == (1, 1, 0)
    buy = await client.post(
        f"/api/sales/{sale}/reservations", json={}, headers={**service, "idempotency-key": "s"}
    )
    assert buy.status_code == 403  # nor does it buy


SEEN: dict[str, int] = {}  # the served app of this test: its sale (made at the first example)
APPLIED: dict[tuple[str, str], dict[str, Any]] = {}  # (app, key): the first 200 answer
deltas = st.one_of(
    st.integers(min_value=-12, max_value=12),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has no inf or nan (see above)
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
)


keys = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=140)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    delta=deltas,
    key=keys | st.sampled_from(["same", "same", "other"]),
    who=st.sampled_from(list(Role)),
)
async def test_any_stock_change_is_answered_and_keeps_the_stores_whole(
    client: httpx.AsyncClient, served: Served, settings: Settings, delta: Any, key: str, who: Role
) -> None:
    sale = SEEN.get(served.url)
    if sale is None:
        sale = SEEN[served.url] = (await open_sale(client, settings, stock=10, limit=3))["id"]
        for n in range(3):
            await reserve(client, settings, sale, f"b{n}", key=f"k{n}", qty=n + 1)
    before = await stores(served, sale)
    response = await change(client, settings, sale, delta, key, who)
    assert response.status_code in (200, 403, 409, 422), response.text
    after = await stores(served, sale)
    assert after[0] == after[1] and after[2] <= after[0]
    if response.status_code == 200:
        assert isinstance(delta, int) and who in (Role.HOST, Role.SERVICE)
        answer = response.json()
        first = APPLIED.setdefault((served.url, key), answer)
        if first is answer:
            assert answer["stock"] == after[0]
        else:  # a retry: nothing changes, and the stock is the one right after the change
            assert (answer["stock"], answer["delta"], after) == (first["stock"], delta, before)
    elif response.status_code != 409 or response.json()["error"] != "conflict":
        assert after == before, response.text
