"""Webhooks where they could hurt: a room's endpoint pointed into the platform's own network
(SSRF), a process started without the global endpoints, a receiver slow enough to hold up
everyone else's, a replay that fails again, credentials in an endpoint's URL."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from sale_kit import ROOM, auth, confirm, db, open_sale, reserve
from serve_kit import serve_app
from webhook_kit import SECRET, all_delivered, deliveries, delivering, receiving, until_stored

from flash_sales.webhooks import admin
from live.settings import Settings
from rooms.actors import Role


async def _buy(client: httpx.AsyncClient, settings: Settings, sale: int, buyer: str) -> None:
    held = await reserve(client, settings, sale, buyer, key=f"k-{buyer}")
    assert held.status_code == 201, held.text
    assert (await confirm(client, settings, held.json()["id"], buyer)).status_code == 201


async def _add_hook(client: httpx.AsyncClient, settings: Settings, url: str) -> int:
    host = auth(settings, "host", Role.HOST)
    await client.put(f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=host)
    body = {"url": url, "secret": SECRET}
    made = await client.post(f"/api/rooms/{ROOM}/webhooks", json=body, headers=host)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def test_a_rooms_endpoint_goes_to_public_addresses_only(settings: Settings) -> None:
    """Refused when it is added (422 url_not_public), and, for one stored anyway (its name
    resolved elsewhere then), refused when a delivery connects; the operator's global endpoint
    on the same loopback interface is trusted."""
    async with receiving() as everything, receiving() as inside:
        own = delivering(settings, everything.url, webhook_allow_private=False)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            sale = (await open_sale(client, own, stock=5))["id"]
            host = auth(own, "host", Role.HOST)
            for url in (
                "http://127.0.0.1:6379/",
                "http://10.0.0.1/hook",
                "http://169.254.169.254/latest/meta-data/",
                "http://[::1]:8080/hook",
                "http://[::ffff:127.0.0.1]/hook",
                "http://100.64.0.1/hook",
                f"http://localhost:{inside.port}/hook",  # a name that resolves to loopback
            ):
                body = {"url": url, "secret": SECRET}
                refused = await client.post(f"/api/rooms/{ROOM}/webhooks", json=body, headers=host)
                assert (refused.status_code, refused.json()["error"]) == (422, "url_not_public"), (
                    url,
                    refused.text,
                )
            conn = await db(own)
            try:
                hook = await conn.fetchval(
                    "INSERT INTO webhooks (room_id, url, secrets) VALUES ($1, $2, $3) RETURNING id",
                    ROOM,
                    inside.url,
                    [SECRET],
                )
            finally:
                await conn.close()
            await _buy(client, own, sale, "ann")
            _, sent = await until_stored(
                own,
                lambda _, sent: any(d["webhook_id"] == hook and d["attempts"] for d in sent),
                "an attempt to the inside endpoint",
            )
            await everything.until(lambda: len(everything.ids(acked=True)) == 2, "globals")
    inside_sent = [d for d in sent if d["webhook_id"] == hook]  # sale.started too, maybe
    assert not any(d["delivered"] for d in inside_sent), inside_sent
    assert all("not public" in d["last_error"] for d in inside_sent if d["attempts"]), inside_sent
    assert inside.got == []


async def test_a_process_without_the_global_endpoints_loses_none_of_their_events(
    settings: Settings,
) -> None:
    """A process configured with LIVE_WEBHOOK_URL registers it; one started without it (a
    rolling deploy, a mistake) fans its events out to it all the same, and they wait for a
    process that has the secret."""
    async with receiving() as receiver:
        configured = delivering(settings, receiver.url)
        bare = delivering(settings)  # no LIVE_WEBHOOK_URL
        async with serve_app(configured):
            async with asyncio.timeout(30):
                while not await _registered(configured, receiver.url):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # a row another process writes, bounded
        async with (
            serve_app(bare) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            sale = (await open_sale(client, bare, stock=5, limit=2))["id"]
            await _buy(client, bare, sale, "ann")
            events, sent = await until_stored(
                bare,
                lambda events, sent: all(e["fanned"] for e in events) and len(sent) == 2,
                "fanned out to the registered endpoint",
            )
            assert {d["url"] for d in sent} == {receiver.url}
            assert receiver.got == []  # this process has not the secret: it sends nothing
        async with serve_app(configured):
            events, _ = await until_stored(configured, all_delivered, "delivered")
    assert receiver.ids(acked=True) == {e["id"] for e in events}
    assert all(g.signed_by(SECRET) for g in receiver.got)


async def _registered(settings: Settings, url: str) -> bool:
    conn = await db(settings)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM webhook_globals WHERE url = $1", url))
    finally:
        await conn.close()


async def test_a_slow_receiver_holds_up_no_one_else(settings: Settings) -> None:
    """A receiver that takes its time (here: holds every request) takes a few of a
    dispatcher's slots; the events of another endpoint, and of later sales, go on meanwhile."""
    async with receiving("hang") as slow, receiving() as fast:
        own = delivering(settings, webhook_timeout_s=30.0)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            await _add_hook(client, own, slow.url)
            await _add_hook(client, own, fast.url)
            first = (await open_sale(client, own, stock=5))["id"]
            await slow.until(lambda: slow.holding > 0, "the slow receiver holding one")
            second = (await open_sale(client, own, stock=5))["id"]
            await _buy(client, own, second, "ann")
            await fast.until(lambda: len(fast.ids(acked=True)) == 3, "the others' events", 20)
            assert slow.holding > 0  # still holding the first sale's event all along
            await slow.set_mode("ok")
            await until_stored(own, all_delivered, "every event delivered")
    assert {g.event["data"]["sale_id"] for g in fast.got} == {first, second}


async def test_a_replay_that_fails_again_holds_back_no_later_event(settings: Settings) -> None:
    async with receiving() as receiver:
        own = delivering(settings, receiver.url)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            sale = (await open_sale(client, own, stock=5))["id"]
            events, _ = await until_stored(own, all_delivered, "sale.started delivered")
            started = events[0]["id"]
            receiver.rejected.add(started)  # the merchant lost it, and its receiver fails on it
            assert await admin.replay(served.services.pg, started, []) == 1
            await receiver.until(
                lambda: sum(g.event["id"] == started for g in receiver.got) >= 3,
                "the replay refused, and retried",
            )
            await _buy(client, own, sale, "ann")
            await _buy(client, own, sale, "bob")
            await receiver.until(lambda: len(receiver.ids(acked=True)) == 3, "later events")
            receiver.rejected.clear()
            events, _ = await until_stored(own, all_delivered, "the replay delivered at last")
    assert receiver.ids(acked=True) == {e["id"] for e in events}


async def test_an_endpoints_credentials_stay_out_of_logs_and_records(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with receiving(up=False) as receiver:
        url = receiver.url.replace("//", "//user:pass-1234@") + "?token=sekrit-5678"
        own = delivering(settings, url, webhook_max_age_s=0.3)
        async with (
            serve_app(own) as served,
            httpx.AsyncClient(base_url=served.url, timeout=30) as client,
        ):
            await open_sale(client, own, stock=3)
            await until_stored(own, lambda _, sent: bool(sent) and sent[0]["dead"], "dead")
    sent = await deliveries(own)
    assert "dead-lettered" in caplog.text
    for text in (caplog.text, *(str(d["last_error"]) for d in sent)):
        assert "sekrit-5678" not in text and "pass-1234" not in text, text
