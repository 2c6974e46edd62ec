"""A group deal in a real Chromium, against the real service: the host console creates and
starts it and shows its figures; one viewer starts a group, another sees it among the open
groups and joins, the group forms and both pages show the order at the group price. A group
whose window closes short fails and says the place was released; a member who left is out."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, Locator, Page, expect
from test_pages import ROOM, LiveProcess, browser, host, live, seed_room, token, viewer

from live.settings import Settings
from rooms.actors import Role

__all__ = ["browser", "live"]

WAIT_MS = 10_000
FORMED = "Group formed! Your order at the group price: $12.00"


async def _create_and_start(console: Page) -> None:
    form = console.get_by_test_id("group-form")
    for name, value in {"stock": "6", "group_price": "12.00", "size": "2", "window": "60"}.items():
        await form.locator(f"input[name={name}]").fill(value)
    await form.get_by_role("button").click()
    await expect(console.get_by_test_id("notice")).to_contain_text("started", timeout=WAIT_MS)


async def _open_group(page: Page) -> str:
    """The id of the one open group the page lists, once it lists one."""
    row = page.get_by_test_id("group-open").locator("li")
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    group = await row.get_attribute("data-group")
    assert group is not None
    return group


def _stat(console: Page, name: str) -> Locator:
    return console.locator(f'[data-group-stat="{name}"]')


async def test_two_viewers_form_a_group_and_both_see_the_order(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    ann = await viewer(browser, live, settings, "ann")
    bob = await viewer(browser, live, settings, "bob")
    console = await host(browser, live, settings)
    await _create_and_start(console)
    for page in (ann, bob):
        await expect(page.get_by_test_id("group")).to_be_visible(timeout=WAIT_MS)
        await expect(page.get_by_test_id("group-was-price")).to_have_text("$18.00")
        await expect(page.get_by_test_id("group-price")).to_have_text("$12.00")
        await expect(page.get_by_test_id("group-terms")).to_have_text("Groups of 2 · 60 s to fill")
        await expect(page.get_by_test_id("sale")).to_be_hidden()  # not a flash sale's Buy

    await ann.get_by_test_id("group-start").click()
    await expect(ann.get_by_test_id("group-progress")).to_have_text("1/2", timeout=WAIT_MS)
    await expect(ann.get_by_test_id("group-timer")).to_have_text(re.compile(r"[01]:\d\d"))
    await expect(ann.get_by_test_id("group-start")).to_be_disabled()
    group = await _open_group(bob)
    listed = bob.locator(f'[data-group="{group}"]')
    await expect(listed).to_contain_text("1/2 · 1 place left")
    await expect(listed.locator('[data-role="countdown"]')).to_have_text(re.compile(r"[01]:\d\d"))
    await expect(_stat(console, "forming")).to_have_text("1", timeout=WAIT_MS)
    await expect(_stat(console, "held")).to_have_text("1", timeout=WAIT_MS)

    await bob.get_by_test_id(f"join-{group}").click()
    for page in (ann, bob):
        await expect(page.get_by_test_id("group-outcome")).to_have_text(FORMED, timeout=WAIT_MS)
        await expect(page.get_by_test_id("group-mine")).to_be_hidden()
        await expect(page.get_by_test_id("group-open").locator("li")).to_have_count(0)
    for name, value in {"formed": "1", "sold": "2", "orders": "2", "held": "0"}.items():
        await expect(_stat(console, name)).to_have_text(value, timeout=WAIT_MS)
    await expect(_stat(console, "revenue")).to_have_text("$24.00")

    await console.get_by_test_id("stop-group").click()
    await expect(_stat(console, "state")).to_have_text("ended", timeout=WAIT_MS)
    await expect(ann.get_by_test_id("group-state")).to_have_text("Ended", timeout=WAIT_MS)
    await expect(ann.get_by_test_id("group-start")).to_be_disabled()


async def test_a_member_leaves_and_the_group_fails_when_its_window_closes(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    products = await seed_room(live, settings)
    # Watching before the start: its event says the deal is open (see group.js, MOVED_TO).
    ann = await viewer(browser, live, settings, "ann")
    bob = await viewer(browser, live, settings, "bob")
    auth = {"authorization": f"Bearer {token(settings, 'host', Role.HOST)}"}
    async with httpx.AsyncClient(base_url=live.url, headers=auth, timeout=10) as client:
        body = {
            "kind": "group",
            "product_id": products[0],
            "price_cents": 1800,
            "group_price_cents": 1200,
            "stock": 6,
            "limit_per_buyer": 1,
            "group_size": 3,
            "group_window_s": 8,
        }
        deal = await client.post(f"/api/rooms/{ROOM}/sales", json=body)
        assert deal.status_code == 201, deal.text
        started = await client.post(f"/api/sales/{deal.json()['id']}/start")
        assert started.status_code == 200, started.text

    await ann.get_by_test_id("group-start").click()
    await expect(ann.get_by_test_id("group-progress")).to_have_text("1/3", timeout=WAIT_MS)
    group = await _open_group(bob)
    await bob.get_by_test_id(f"join-{group}").click()
    await expect(bob.get_by_test_id("group-progress")).to_have_text("2/3", timeout=WAIT_MS)
    await expect(ann.get_by_test_id("group-progress")).to_have_text("2/3", timeout=WAIT_MS)

    await bob.get_by_test_id("group-leave").click()
    await expect(bob.get_by_test_id("group-message")).to_have_text(
        "You left the group: your place was released.", timeout=WAIT_MS
    )
    await expect(bob.get_by_test_id("group-mine")).to_be_hidden()
    await expect(ann.get_by_test_id("group-progress")).to_have_text("1/3", timeout=WAIT_MS)
    await expect(bob.locator(f'[data-group="{group}"]')).to_contain_text("2 places left")

    # The window closes with one member of three: the group fails, the hold goes back.
    await expect(ann.get_by_test_id("group-outcome")).to_have_text(
        "The group did not fill in time: your place was released.", timeout=20_000
    )
    await expect(ann.get_by_test_id("group-outcome")).to_have_attribute("data-outcome", "failed")
    await expect(ann.get_by_test_id("group-mine")).to_be_hidden()
    await expect(ann.get_by_test_id("group-start")).to_be_enabled()
    await expect(bob.get_by_test_id("group-outcome")).to_have_text("")
    await expect(bob.get_by_test_id("group-open").locator("li")).to_have_count(0)
