"""The waitlist on the viewer overlay in a real Chromium, against the real service: on a
sold-out sale two viewers join the waitlist; a freed unit is offered to the first (its own
timer, Confirm and No thanks), who declines; the offer goes to the second, who confirms."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect
from test_pages import ROOM, LiveProcess, browser, live, seed_room, token, viewer

from live.settings import Settings
from rooms.actors import Role

__all__ = ["browser", "live"]

WAIT_MS = 10_000


async def test_a_freed_unit_is_offered_on_the_overlay_in_waitlist_order(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    products = await seed_room(live, settings)
    host = {"authorization": f"Bearer {token(settings, 'host', Role.HOST)}"}
    ann = {"authorization": f"Bearer {token(settings, 'ann')}", "idempotency-key": "one"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        sale = {"product_id": products[0], "stock": 1, "price_cents": 1999, "hold_seconds": 60}
        made = await client.post(f"/api/rooms/{ROOM}/sales", json=sale, headers=host)
        await client.post(f"/api/sales/{made.json()['id']}/start", headers=host)
        held = await client.post(f"/api/sales/{made.json()['id']}/reservations", headers=ann)
        assert held.status_code == 201, held.text

        bob = await viewer(browser, live, settings, "bob")
        cy = await viewer(browser, live, settings, "cy")
        for page, place in ((bob, 1), (cy, 2)):
            await expect(page.get_by_test_id("stock")).to_have_text("Sold out", timeout=WAIT_MS)
            await page.get_by_test_id("join-waitlist").click()
            await expect(page.get_by_test_id("waitlist-message")).to_have_text(
                f"You are #{place} on the waitlist."
            )
            await expect(page.get_by_test_id("leave-waitlist")).to_be_visible()
        await expect(bob.get_by_test_id("waitlist-offer")).to_be_hidden()

        cancelled = await client.delete(f"/api/reservations/{held.json()['id']}", headers=ann)
        assert cancelled.status_code == 200, cancelled.text

    offer = bob.get_by_test_id("waitlist-offer")
    await expect(offer).to_be_visible(timeout=WAIT_MS)
    await expect(bob.get_by_test_id("waitlist-offer-price")).to_have_text("$19.99")
    await expect(bob.get_by_test_id("waitlist-offer-timer")).not_to_have_text("")
    await expect(cy.get_by_test_id("waitlist-offer")).to_be_hidden()
    await bob.get_by_test_id("decline-waitlist-offer").click()
    await expect(bob.get_by_test_id("waitlist-message")).to_contain_text("Declined")
    await expect(offer).to_be_hidden()

    await expect(cy.get_by_test_id("waitlist-offer")).to_be_visible(timeout=WAIT_MS)
    await cy.get_by_test_id("confirm-waitlist-offer").click()
    await expect(cy.get_by_test_id("waitlist-message")).to_contain_text(
        "confirmed", timeout=WAIT_MS
    )
    assert await cy.get_by_test_id("waitlist-message").get_attribute("data-order")
    await expect(cy.get_by_test_id("waitlist-offer")).to_be_hidden()
