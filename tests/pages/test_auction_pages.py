"""An auction in a real Chromium, against the real service: the host console creates and starts
it and shows the bid ladder; two viewers bid with the quick-bid buttons and a hidden maximum,
each sees "you're winning" / "outbid" (the direct `outbid` message), the countdown by the
server's clock and every extension up to the cap; the winner confirms the offer into an order."""

from __future__ import annotations

import asyncio
import re

import httpx
from playwright.async_api import Browser, Page, expect
from test_pages import ROOM, LiveProcess, browser, host, live, seed_room, token, viewer

from live.settings import Settings
from rooms.actors import Role

__all__ = ["browser", "live"]

WAIT_MS = 10_000


async def _create_and_start(console: Page) -> None:
    form = console.get_by_test_id("auction-form")
    for name, value in {
        "start": "10.00",
        "increment": "1.00",
        "duration": "8",  # shorter than the snipe window: every bid extends, up to the cap
        "snipe": "10",
        "extensions": "2",
    }.items():
        await form.locator(f"input[name={name}]").fill(value)
    await form.get_by_role("button").click()
    await expect(console.get_by_test_id("notice")).to_contain_text("started", timeout=WAIT_MS)


async def _standing(page: Page, text: str) -> None:
    await expect(page.get_by_test_id("auction-standing")).to_have_text(text, timeout=WAIT_MS)


async def test_an_auction_with_a_snipe_extension_a_proxy_bid_and_the_winners_order(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    ann = await viewer(browser, live, settings, "ann")
    bob = await viewer(browser, live, settings, "bob")
    console = await host(browser, live, settings)
    await _create_and_start(console)
    for page in (ann, bob):
        await expect(page.get_by_test_id("auction")).to_be_visible(timeout=WAIT_MS)
        await expect(page.get_by_test_id("auction-price")).to_have_text("$10.00")
        await expect(page.get_by_test_id("auction-countdown")).to_have_text(
            re.compile(r"ends in 0:0\d")
        )
        await expect(page.get_by_test_id("quick-bid-0")).to_have_text("Bid $10.00")

    await ann.get_by_test_id("quick-bid-0").click()
    await _standing(ann, "You're winning")
    for page in (ann, bob):  # the bid moved the end to now + 10 s: the first extension
        await expect(page.get_by_test_id("auction-extended")).to_contain_text(
            "1/2", timeout=WAIT_MS
        )
    await expect(bob.get_by_test_id("quick-bid-0")).to_have_text("Bid $11.00", timeout=WAIT_MS)
    await bob.get_by_test_id("quick-bid-0").click()
    await _standing(bob, "You're winning")
    await _standing(ann, "Outbid")  # told directly, to ann only
    await expect(ann.get_by_test_id("auction-price")).to_have_text("$11.00")
    await expect(ann.get_by_test_id("auction-leader")).to_have_text("leading: Bob")
    await expect(console.locator('[data-auction-stat="extensions"]')).to_have_text(
        "2/2", timeout=WAIT_MS
    )

    max_form = ann.get_by_test_id("max-form")
    await max_form.locator("input[name=max]").fill("20.00")
    await max_form.get_by_role("button").click()
    await _standing(ann, "You're winning")  # the server bid $12.00 for her, up to $20.00
    await _standing(bob, "Outbid")
    await expect(bob.get_by_test_id("auction-price")).to_have_text("$12.00", timeout=WAIT_MS)
    ladder = console.get_by_test_id("bid-ladder").locator("tr")
    await expect(ladder).to_have_count(3, timeout=WAIT_MS)
    await expect(ladder.first).to_contain_text("ann")
    await expect(ladder.first).to_contain_text("$12.00")
    await expect(console.locator('[data-auction-stat="extensions"]')).to_have_text("2/2")

    # The end, by the server's clock, about 10 s after bob's bid (the cap reached: no more).
    for page in (ann, bob):
        await expect(page.get_by_test_id("auction-countdown")).to_have_text("Ended", timeout=20_000)
        await expect(page.get_by_test_id("auction-message")).to_have_text("Sold for $12.00 to Ann")
    await expect(console.get_by_test_id("stop-auction")).to_be_disabled()
    offer = ann.get_by_test_id("offer")
    await expect(offer).to_be_visible(timeout=WAIT_MS)
    await expect(ann.get_by_test_id("offer-price")).to_have_text("$12.00")
    await expect(bob.get_by_test_id("offer")).to_be_hidden()
    await ann.get_by_test_id("confirm-offer").click()
    await expect(ann.get_by_test_id("auction-message")).to_contain_text(
        "confirmed — $12.00", timeout=WAIT_MS
    )
    await expect(offer).to_be_hidden()


async def test_a_reloaded_winner_finds_the_offer_again(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    """The offer is a direct message, never replayed: the page reads it again after loading."""
    products = await seed_room(live, settings)
    host_auth = {"authorization": f"Bearer {token(settings, 'host', Role.HOST)}"}
    ann_auth = {"authorization": f"Bearer {token(settings, 'ann')}", "idempotency-key": "a"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        body = {
            "product_id": products[0],
            "start_cents": 500,
            "increment_cents": 100,
            "duration_s": 60,
            "snipe_window_s": 0,
            "max_extensions": 0,
        }
        created = await client.post(f"/api/rooms/{ROOM}/auctions", json=body, headers=host_auth)
        auction = created.json()["id"]
        started = await client.post(f"/api/auctions/{auction}/start", headers=host_auth)
        assert started.status_code == 200, started.text
        bid = await client.post(
            f"/api/auctions/{auction}/bids", json={"amount_cents": 500}, headers=ann_auth
        )
        assert bid.status_code == 201, bid.text
        stopped = await client.post(f"/api/auctions/{auction}/stop", headers=host_auth)
        assert stopped.status_code == 200, stopped.text
        async with asyncio.timeout(WAIT_MS / 1000):  # the settlement made the winner's hold
            while not await _offered(client, auction, ann_auth):  # noqa: ASYNC110 (PostgreSQL)
                await asyncio.sleep(0.05)
    page = await viewer(browser, live, settings, "ann")  # after the direct message went out
    await expect(page.get_by_test_id("offer")).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_test_id("offer-price")).to_have_text("$5.00")
    await expect(page.get_by_test_id("offer-kind")).to_have_text("You won!")


async def _offered(client: httpx.AsyncClient, auction: int, auth: dict[str, str]) -> bool:
    response = await client.get(f"/api/auctions/{auction}/offers", headers=auth)
    return any(o["reservation_id"] for o in response.json()["offers"])
