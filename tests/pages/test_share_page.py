"""Share links in a real Chromium, against the real service: a viewer's Share button shows their
link; another viewer opens the room through it (the overlay connects with `share`) and buys; the
host console sets a reward rule and its referral table credits the sharer with the visit, the
order, the revenue and the reward."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect
from test_pages import ROOM, LiveProcess, browser, live, seed_room, token, viewer

from live.settings import Settings
from rooms.actors import Role

__all__ = ["browser", "live"]

WAIT_MS = 10_000


async def _buy(live: LiveProcess, settings: Settings, product: int, buyer: str) -> None:
    host = {"authorization": f"Bearer {token(settings, 'host', Role.HOST)}"}
    mine = {"authorization": f"Bearer {token(settings, buyer)}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        sale = {
            "product_id": product,
            "stock": 5,
            "price_cents": 1999,
            "limit_per_buyer": 1,
            "hold_seconds": 60,
        }
        created = await client.post(f"/api/rooms/{ROOM}/sales", json=sale, headers=host)
        await client.post(f"/api/sales/{created.json()['id']}/start", headers=host)
        held = await client.post(
            f"/api/sales/{created.json()['id']}/reservations",
            json={"qty": 1},
            headers={**mine, "idempotency-key": "one"},
        )
        assert held.status_code == 201, held.text
        confirmed = await client.post(
            f"/api/reservations/{held.json()['id']}/confirm",
            json={"payment_ref": "pay-1"},
            headers=mine,
        )
        assert confirmed.status_code == 201, confirmed.text


async def test_a_shared_link_credits_the_sharer_in_the_host_console(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    products = await seed_room(live, settings)
    ann = await viewer(browser, live, settings, "ann")
    await ann.get_by_test_id("share").click()
    link_box = ann.get_by_test_id("share-link")
    await expect(link_box).to_be_visible(timeout=WAIT_MS)
    await expect(ann.get_by_test_id("share-message")).to_contain_text("credited to you")
    link = await link_box.input_value()
    assert link.startswith(f"{live.url}/watch/{ROOM}?share="), link

    bob = await browser.new_page()
    await bob.goto(f"{link}#token={token(settings, 'bob')}")
    await expect(bob.get_by_test_id("status")).to_have_text("live", timeout=WAIT_MS)
    await _buy(live, settings, products[0], "bob")  # the visit was recorded before the welcome

    anonymous = await browser.new_page()
    await anonymous.goto(link)  # no token (the prompt dismissed): watches, counted, no credit
    await expect(anonymous.get_by_test_id("status")).to_have_text("live", timeout=WAIT_MS)
    await anonymous.get_by_test_id("share").click()
    await expect(anonymous.get_by_test_id("share-message")).to_have_text("Sign in to share.")

    console = await browser.new_page(viewport={"width": 1280, "height": 900})
    await console.goto(f"{live.url}/host/{ROOM}#token={token(settings, 'host', Role.HOST)}")
    await expect(console.get_by_test_id("status")).to_have_text("live", timeout=WAIT_MS)
    form = console.get_by_test_id("referral-rule-form")
    await form.locator("input[name=percent]").fill("15")
    await form.get_by_role("button").click()
    await expect(console.get_by_test_id("notice")).to_have_text("Reward rule saved: 15%")
    row = console.locator('[data-sharer="ann"]')
    await expect(row.locator('[data-referral="visits"]')).to_have_text("2", timeout=WAIT_MS)
    await expect(row.locator('[data-referral="orders"]')).to_have_text("1")
    await expect(row.locator('[data-referral="revenue"]')).to_have_text("$19.99")
    await expect(row.locator('[data-referral="reward"]')).to_have_text("$2.99")  # 299.85 cents
    await expect(console.get_by_test_id("referral-rule")).to_have_text("15% of attributed revenue")
