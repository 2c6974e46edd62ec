"""Webhooks to real receivers: every event of the outbox reaches every endpoint at least once, in
order per sale, signed, with a stable id, through a receiver that fails, hangs, goes down and
comes back; a room's own endpoints; a slow receiver never holds up a confirm."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sale_kit import ROOM, auth, client, confirm, open_sale, reserve
from serve_kit import Served, serve_app
from webhook_kit import (
    SECRET,
    Receiver,
    all_delivered,
    deliveries,
    delivering,
    in_order,
    receiving,
    until_stored,
)

from flash_sales.webhooks import dispatcher
from flash_sales.webhooks.endpoints import check_secrets, check_url
from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name
ROOM_SECRETS = ("whsec-room-new-0123456789", "whsec-room-old-0123456789")


async def _buy(client: httpx.AsyncClient, settings: Settings, sale: int, buyer: str) -> None:
    held = await reserve(client, settings, sale, buyer, key=f"k-{buyer}")
    assert held.status_code == 201, held.text
    order = await confirm(client, settings, held.json()["id"], buyer)
    assert order.status_code == 201, order.text


async def test_every_event_arrives_in_order_signed_through_failures_and_downtime(
    settings: Settings,
) -> None:
    async with receiving("fail") as receiver:
        own = delivering(settings, receiver.url)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            sale = (await open_sale(client, own, stock=40, limit=2))["id"]
            for n in range(6):  # confirms go on while every delivery fails
                await _buy(client, own, sale, f"a{n}")
            await receiver.until(lambda: len(receiver.got) >= 3, "failed attempts")
            assert {g.status for g in receiver.got} == {500}
            await receiver.set_mode("hang")
            await receiver.until(lambda: receiver.holding > 0, "a delivery held")
            for n in range(4):  # a receiver that never answers does not hold up a confirm
                await _buy(client, own, sale, f"b{n}")
            assert receiver.holding > 0
            await receiver.stop()  # down: connections refused
            await until_stored(
                own,
                lambda _, sent: any("Connect" in (d["last_error"] or "") for d in sent),
                "a refused connection recorded",
            )
            service = auth(own, "erp", Role.SERVICE)
            added = await client.post(
                f"/api/sales/{sale}/stock",
                json={"delta": 5},
                headers={**service, "idempotency-key": "restock-1"},
            )
            assert added.status_code == 200, added.text
            for n in range(3):
                await _buy(client, own, sale, f"c{n}")
            host = auth(own, "host", Role.HOST)
            assert (await client.post(f"/api/sales/{sale}/stop", headers=host)).status_code == 200
            await receiver.set_mode("ok")
            await receiver.start()
            events, sent = await until_stored(own, all_delivered, "every event delivered")
            await _metrics_counted(served)
    _judge(receiver, events, sent)


def _judge(receiver: Receiver, events: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    types = collections.Counter(e["type"] for e in events)
    assert types == {
        "sale.started": 1,
        "order.created": 13,
        "sale.stock_changed": 1,
        "sale.ended": 1,
    }, types
    assert (events[0]["type"], events[-1]["type"]) == ("sale.started", "sale.ended")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert receiver.ids(acked=True) == {e["id"] for e in events}  # each at least once
    assert len(receiver.got) > len(events)  # retries happened
    for got in receiver.got:
        assert got.signed_by(SECRET), got.headers
        assert not got.signed_by("another-secret-0123456789")
        assert got.headers["live-event-id"] == got.event["id"]
        assert got.headers["live-event-type"] == got.event["type"]
        assert set(got.event) == {"id", "type", "created_at", "data"}
    bodies: dict[str, set[str]] = {}
    for got in receiver.got:  # a retry sends the same event: same id, same body
        bodies.setdefault(got.event["id"], set()).add(got.body.decode())
    assert all(len(b) == 1 for b in bodies.values())
    assert not in_order(receiver.got), in_order(receiver.got)
    assert all(d["attempts"] >= 1 and not d["dead"] for d in sent)
    orders = [g.event for g in receiver.got if g.event["type"] == "order.created"]
    assert all(o["data"]["order"]["buyer"] and o["data"]["room"] == ROOM for o in orders)
    changed = next(g.event for g in receiver.got if g.event["type"] == "sale.stock_changed")
    assert (changed["data"]["delta"], changed["data"]["stock"]) == (5, 45)


async def _metrics_counted(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("live_webhook_")
    }
    assert values["live_webhook_deliveries_total"] >= 16, values
    assert values["live_webhook_failures_total"] >= 3, values
    assert "live_webhook_oldest_undelivered_seconds" in values


async def test_two_processes_share_the_deliveries_and_keep_each_sales_order(
    settings: Settings,
) -> None:
    """No leader: two processes' dispatchers claim the queues of three sales whose orders both
    processes write at once, through a receiver that fails every third request."""
    async with receiving("flaky") as receiver:
        own = delivering(settings, receiver.url)
        async with (
            serve_app(own) as one,
            serve_app(own) as two,
            httpx.AsyncClient(base_url=one.url, timeout=30) as first,
            httpx.AsyncClient(base_url=two.url, timeout=30) as second,
        ):
            sales = [(await open_sale(first, own, stock=30))["id"] for _ in range(3)]

            async def buyers(client: httpx.AsyncClient, name: str) -> None:
                for n in range(8):
                    await _buy(client, own, sales[n % 3], f"{name}{n}")

            await asyncio.gather(buyers(first, "a"), buyers(second, "b"))
            service = {**auth(own, "erp", Role.SERVICE), "idempotency-key": "more"}
            added = await second.post(
                f"/api/sales/{sales[0]}/stock", json={"delta": 2}, headers=service
            )
            assert added.status_code == 200, added.text
            events, sent = await until_stored(own, all_delivered, "every event delivered")
    per_sale = collections.Counter(e["sale_id"] for e in events)
    # each sale started, then its orders (6, 6 and 4), and the first one's stock change
    assert [per_sale[sale] for sale in sales] == [1 + 6 + 1, 1 + 6, 1 + 4], per_sale
    assert receiver.ids(acked=True) == {e["id"] for e in events}
    assert any(g.status == 500 for g in receiver.got)
    assert not in_order(receiver.got), in_order(receiver.got)
    assert all(g.signed_by(SECRET) for g in receiver.got)
    assert not any(d["dead"] for d in sent)


async def test_a_receiver_that_is_down_is_given_no_more_than_it_takes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries are made only a little ahead of what the receiver takes: while it is down,
    a sale's later events stay in the outbox, and they all go once it is back."""
    monkeypatch.setattr(dispatcher, "BACKLOG", 3)
    async with receiving(up=False) as receiver:
        own = delivering(settings, receiver.url)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            sale = (await open_sale(client, own, stock=20))["id"]
            for n in range(3):
                await _buy(client, own, sale, f"a{n}")
            _, sent = await until_stored(own, lambda _, sent: len(sent) >= 3, "3 waiting")
            tried = sent[0]["attempts"]
            _, sent = await until_stored(  # a fan-out running meanwhile is over
                own, lambda _, sent: sent[0]["attempts"] > tried, "a retry"
            )
            tried = sent[0]["attempts"]
            for n in range(4):
                await _buy(client, own, sale, f"b{n}")
            events, later = await until_stored(  # a few passes of the dispatcher later
                own, lambda _, sent: sent[0]["attempts"] >= tried + 2, "retries"
            )
            assert len(later) == len(sent) < len(events) == 8
            assert not events[-1]["fanned"]
            await receiver.start()
            events, sent = await until_stored(own, all_delivered, "every event delivered")
    assert len(sent) == len(events) == 8
    assert receiver.ids(acked=True) == {e["id"] for e in events}
    assert not in_order(receiver.got), in_order(receiver.got)


async def test_a_rooms_own_endpoint_with_two_secrets(settings: Settings) -> None:
    async with receiving() as everything, receiving() as rooms:
        own = delivering(settings, everything.url)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            host = auth(own, "host", Role.HOST)
            sale = (await open_sale(client, own, stock=10))["id"]
            # sale.started fanned out before the room's endpoint is added: not the room's
            await everything.until(lambda: len(everything.got) >= 1, "sale.started")
            body = {"url": rooms.url, "secret": ",".join(ROOM_SECRETS)}
            made = await client.post(f"/api/rooms/{ROOM}/webhooks", json=body, headers=host)
            assert made.status_code == 201, made.text
            hook = made.json()
            assert (hook["url"], hook["secrets"], hook["room"]) == (rooms.url, 2, ROOM)
            listed = await client.get(f"/api/rooms/{ROOM}/webhooks", headers=host)
            assert listed.json() == {"webhooks": [hook]}
            assert ROOM_SECRETS[0] not in listed.text
            await _buy(client, own, sale, "ann")
            await rooms.until(lambda: len(rooms.ids(acked=True)) == 1, "the room's endpoint")
            # the old secret retired: the same url again, with the new secret alone
            again = {"url": rooms.url, "secret": ROOM_SECRETS[0]}
            kept = await client.post(f"/api/rooms/{ROOM}/webhooks", json=again, headers=host)
            assert (kept.status_code, kept.json()["id"], kept.json()["secrets"]) == (
                200,
                hook["id"],
                1,
            )
            await _buy(client, own, sale, "bob")
            await rooms.until(lambda: len(rooms.ids(acked=True)) == 2, "after the rotation")
            gone = await client.delete(f"/api/rooms/{ROOM}/webhooks/{hook['id']}", headers=host)
            assert gone.json() == {"id": hook["id"], "removed": True}
            again_gone = await client.delete(
                f"/api/rooms/{ROOM}/webhooks/{hook['id']}", headers=host
            )
            assert again_gone.status_code == 200
            assert (await client.get(f"/api/rooms/{ROOM}/webhooks", headers=host)).json() == {
                "webhooks": []
            }
            await _buy(client, own, sale, "cat")
            await until_stored(own, all_delivered, "every event delivered")
    ann, bob = rooms.got[0], rooms.got[-1]
    assert ann.signed_by(ROOM_SECRETS[0]) and ann.signed_by(ROOM_SECRETS[1])
    assert ann.headers["live-signature"].count("v1=") == 2
    assert bob.signed_by(ROOM_SECRETS[0]) and not bob.signed_by(ROOM_SECRETS[1])
    assert bob.headers["live-signature"].count("v1=") == 1
    assert not ann.signed_by(SECRET)
    # the room's endpoint got the orders made while it was there, and nothing after its removal
    assert [g.event["data"]["order"]["buyer"] for g in rooms.got] == ["ann", "bob"]
    everything_types = [g.event["type"] for g in everything.got]
    assert everything_types == ["sale.started", *["order.created"] * 3], everything_types
    assert all(g.signed_by(SECRET) for g in everything.got)


async def test_a_room_endpoint_is_refused_unless_its_url_and_secret_are_good(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await open_sale(client, settings, stock=1)
    host = auth(settings, "host", Role.HOST)
    url = "/api/rooms/{room}/webhooks"
    good = {"url": "https://erp.example.com/hooks/live", "secret": SECRET}
    bad_bodies: list[Any] = [
        {**good, "url": "ftp://erp.example.com/x"},
        {**good, "url": "javascript:alert(1)"},
        {**good, "url": "http://"},
        {**good, "url": "https:///path"},
        {**good, "url": "erp.example.com/hooks"},
        {**good, "url": "http://exa mple.com/"},
        {**good, "url": "http://example.com:99999/"},
        {**good, "url": "http://ex\u00e4mple.com/"},
        {**good, "url": "http://example.com/" + "x" * 2000},
        {**good, "url": 7},
        {**good, "secret": "short"},
        {**good, "secret": "a" * 20 + "," + "b" * 20 + "," + "c" * 20},
        {**good, "secret": "with a space in it, long enough"},
        {**good, "secret": None},
        {"url": good["url"]},
        {"secret": SECRET},
    ]
    for body in bad_bodies:
        response = await client.post(url.format(room=ROOM), json=body, headers=host)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "invalid"
    refused = [
        (ROOM, auth(settings, "viewer", Role.VIEWER), 403),
        (ROOM, auth(settings, "mod", Role.MODERATOR), 403),
        (ROOM, auth(settings, "erp", Role.SERVICE), 403),
        (ROOM, {}, 401),
        ("elsewhere", auth(settings, "host", Role.HOST, "elsewhere"), 404),  # no such room
    ]
    for room, headers, status in refused:
        response = await client.post(url.format(room=room), json=good, headers=headers)
        assert response.status_code == status, (room, response.text)
    listed = await client.get(url.format(room=ROOM), headers=host)
    assert listed.json() == {"webhooks": []}
    unknown = await client.delete(f"/api/rooms/{ROOM}/webhooks/999", headers=host)
    assert unknown.status_code == 404
    made = [
        await client.post(
            url.format(room=ROOM), json={**good, "url": f"{good['url']}/{n}"}, headers=host
        )
        for n in range(11)
    ]
    assert [m.status_code for m in made] == [201] * 10 + [409]
    assert made[-1].json()["error"] == "too_many"


async def test_a_dead_letter_waits_for_no_one(settings: Settings) -> None:
    """A delivery past its retry window is dead-lettered, and the events after it flow on."""
    async with receiving("fail") as receiver:
        own = delivering(settings, receiver.url, webhook_max_age_s=0.3)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            sale = (await open_sale(client, own, stock=5))["id"]
            await until_stored(
                own, lambda _, sent: bool(sent) and sent[0]["dead"], "the first dead-lettered"
            )
            await receiver.set_mode("ok")
            await _buy(client, own, sale, "ann")
            await until_stored(
                own, lambda _, sent: len(sent) == 2 and sent[1]["delivered"], "the next delivered"
            )
            assert served.services.dispatcher is not None
    sent = await deliveries(own)
    assert [(d["seq"], d["dead"], d["delivered"]) for d in sent] == [
        (1, True, False),
        (2, False, True),
    ]
    assert sent[0]["last_status"] == 500 and sent[0]["attempts"] >= 1


MADE: set[str] = set()  # the served apps whose room exists
urls = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"\A(https?|ftp|javascript)://[^/]{0,24}(/[^ ]{0,16})?\Z"),
    st.sampled_from(["http://127.0.0.1:9/a", "https://example.com/x", "http://[::1]:1/"]),
)
secrets = st.one_of(
    st.text(max_size=50),
    st.sampled_from([SECRET, f"{SECRET},{SECRET}-old", f"{SECRET},,{SECRET}"]),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(url=urls | st.integers() | st.none(), secret=secrets | st.integers())
async def test_any_endpoint_is_kept_only_when_its_url_and_secret_are_good(
    client: httpx.AsyncClient, served: Served, settings: Settings, url: Any, secret: Any
) -> None:
    host = auth(settings, "host", Role.HOST)
    if served.url not in MADE:
        MADE.add(served.url)
        await open_sale(client, settings, stock=1)
    path = f"/api/rooms/{ROOM}/webhooks"
    response = await client.post(path, json={"url": url, "secret": secret}, headers=host)
    assert response.status_code in (200, 201, 409, 422), response.text
    kept = (await client.get(path, headers=host)).json()["webhooks"]
    for hook in kept:
        assert check_url(hook["url"]) == hook["url"]
        assert 1 <= hook["secrets"] <= 2
    if response.status_code in (200, 201):
        assert isinstance(url, str) and check_url(url) == url
        assert check_secrets(secret) and response.json()["url"] == url
        assert any(hook["url"] == url for hook in kept)
        removed = await client.delete(f"{path}/{response.json()['id']}", headers=host)
        assert removed.status_code == 200  # room for the next one (10 at most)
