"""The host console and the viewer overlay in a real Chromium, against the real service."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from live_env import live_env
from playwright.async_api import Browser, Page, async_playwright, expect

from gateway.auth import mint, verify
from live.embedded import free_port
from live.settings import Settings
from rooms.actors import Role

ROOM = "stage"
CHROMIUM = os.environ.get("LIVE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CLOSED_NETWORK_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class LiveProcess:
    """`live serve` as a subprocess on a fixed port, so it can be restarted in place."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = live_env(settings)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "live.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.process.returncode is None, "live serve exited"
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("live serve never became ready")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveProcess]:
    process = LiveProcess(settings)
    await process.start()
    yield process
    await process.stop()


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CLOSED_NETWORK_FLAGS
        )
        yield chromium
        await chromium.close()


def token(settings: Settings, sub: str, role: Role = Role.VIEWER) -> str:
    return mint(settings.jwt_secret, sub=sub, role=role, room=ROOM, ttl_s=3600, name=sub.title())


async def seed_room(live: LiveProcess, settings: Settings) -> list[int]:
    host = {"authorization": f"Bearer {token(settings, 'host', Role.HOST)}"}
    async with httpx.AsyncClient(base_url=live.url, headers=host, timeout=10) as client:
        assert (await client.put(f"/api/rooms/{ROOM}", json={"title": "Studio"})).status_code == 200
        ids = []
        for sku, title, price in [("mug", "Stoneware mug", 1800), ("tote", "Tote bag", 2400)]:
            product = await client.post(
                f"/api/rooms/{ROOM}/products",
                json={"sku": sku, "title": title, "price_cents": price},
            )
            ids.append(product.json()["id"])
        return ids


async def viewer(browser: Browser, live: LiveProcess, settings: Settings, sub: str) -> Page:
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    await page.goto(f"{live.url}/watch/{ROOM}#token={token(settings, sub)}")
    await expect(page.get_by_test_id("status")).to_have_text("live", timeout=10_000)
    return page


async def host(browser: Browser, live: LiveProcess, settings: Settings) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{live.url}/host/{ROOM}#token={token(settings, 'host', Role.HOST)}")
    await expect(page.get_by_test_id("status")).to_have_text("live", timeout=10_000)
    await expect(page.get_by_test_id("pin-mug")).to_be_visible()
    return page


async def outcomes(buyers: list[Page], deadline_s: float) -> tuple[list[Page], list[Page]]:
    """The buyers holding an item and those shown the sale sold out, once three hold and every
    other one shows it sold out (or at the deadline). A buyer's click may land on a button that
    the sold-out stock event disabled a moment before, so "sold out" is the refusal's message or
    the overlay's sold-out state with no message."""
    deadline = time.monotonic() + deadline_s
    while True:
        held: list[Page] = []
        sold_out: list[Page] = []
        for page in buyers:
            message = await page.get_by_test_id("sale-message").text_content() or ""
            stock = await page.get_by_test_id("stock").text_content() or ""
            if message.startswith("Reserved"):
                held.append(page)
            elif "Sold out" in message or (not message and stock == "Sold out"):
                sold_out.append(page)
        if len(held) + len(sold_out) == len(buyers) and len(held) >= 3:
            return held, sold_out
        if time.monotonic() > deadline:
            return held, sold_out
        await asyncio.sleep(0.05)  # polling, bounded by the deadline


async def test_pin_reaches_two_viewers_within_a_second(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    viewers = [await viewer(browser, live, settings, name) for name in ("ann", "bob")]
    console = await host(browser, live, settings)
    await console.get_by_test_id("pin-tote").click()
    for page in viewers:
        await expect(page.get_by_test_id("product-title")).to_have_text("Tote bag", timeout=1000)


async def test_flash_sale_of_three_items_to_five_buyers(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    buyers = [await viewer(browser, live, settings, f"buyer{n}") for n in range(5)]
    console = await host(browser, live, settings)
    form = console.get_by_test_id("sale-form")
    await form.locator("input[name=stock]").fill("3")
    await form.locator("input[name=hold]").fill("60")
    await form.get_by_role("button").click()
    for page in buyers:
        await expect(page.get_by_test_id("buy")).to_be_enabled(timeout=5000)
    await asyncio.gather(*(page.get_by_test_id("buy").click() for page in buyers))
    held, sold_out = await outcomes(buyers, deadline_s=10)
    assert (len(held), len(sold_out)) == (3, 2), (len(held), len(sold_out))
    for page in held:
        await expect(page.get_by_test_id("hold")).to_be_visible()
        await page.get_by_test_id("confirm").click()
        await expect(page.get_by_test_id("sale-message")).to_contain_text("confirmed")
    for page in buyers:
        await expect(page.get_by_test_id("stock")).to_have_text("Sold out", timeout=3000)
    await expect(console.locator('[data-stat="sold"]')).to_have_text("3", timeout=3000)
    await expect(console.locator('[data-stat="orders"]')).to_have_text("3")
    ARTIFACTS.mkdir(exist_ok=True)
    await held[0].screenshot(path=str(ARTIFACTS / "viewer-after-sale.png"), full_page=True)
    await console.screenshot(path=str(ARTIFACTS / "host-after-sale.png"), full_page=True)


async def test_viewer_reconnects_after_a_restart_and_shows_the_current_pin(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    products = await seed_room(live, settings)
    page = await viewer(browser, live, settings, "ann")
    host_auth = {"authorization": f"Bearer {token(settings, 'host', Role.HOST)}"}
    await live.stop()
    await expect(page.get_by_test_id("status")).to_contain_text("reconnecting", timeout=5000)
    await live.start()
    async with httpx.AsyncClient(base_url=live.url, headers=host_auth, timeout=10) as client:
        pinned = await client.post(f"/api/rooms/{ROOM}/pin", json={"product_id": products[1]})
        assert pinned.status_code == 200
    await expect(page.get_by_test_id("status")).to_have_text(
        re.compile("live|resumed"), timeout=15_000
    )
    await expect(page.get_by_test_id("product-title")).to_have_text("Tote bag", timeout=5000)


async def test_comments_travel_and_a_muted_viewer_is_refused(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    ann = await viewer(browser, live, settings, "ann")
    bob = await viewer(browser, live, settings, "bob")
    await ann.get_by_test_id("comment-input").fill("hello from ann")
    await ann.get_by_test_id("comment-input").press("Enter")
    await expect(bob.get_by_test_id("comments")).to_contain_text("hello from ann", timeout=2000)
    console = await host(browser, live, settings)
    await expect(console.get_by_test_id("comments")).to_contain_text("hello from ann")
    await console.get_by_test_id("mute-ann").click()
    await expect(console.get_by_test_id("notice")).to_contain_text("Muted")
    await ann.get_by_test_id("comment-input").fill("am I muted?")
    await ann.get_by_test_id("comment-input").press("Enter")
    await expect(ann.get_by_test_id("comment-message")).to_contain_text("muted", timeout=2000)
    await asyncio.sleep(0.3)
    assert "am I muted?" not in (await bob.get_by_test_id("comments").text_content() or "")


async def _short_lived_viewer(
    browser: Browser, live: LiveProcess, settings: Settings, init_script: str = ""
) -> tuple[Page, float]:
    """A viewer page whose token runs out within 2-3 s; returns it and that token's exp."""
    short = mint(settings.jwt_secret, sub="ann", role=Role.VIEWER, room=ROOM, ttl_s=3, name="Ann")
    exp = float(verify(settings.jwt_secret, short).exp)
    page = await browser.new_page()
    if init_script:
        await page.add_init_script(init_script)
    await page.goto(f"{live.url}/watch/{ROOM}#token={short}")
    await expect(page.get_by_test_id("status")).to_have_text("live", timeout=10_000)
    return page, exp


async def _still_signed_in_after(page: Page, exp: float) -> None:
    await asyncio.sleep(max(0.0, exp + 1.0 - time.time()))  # past the first token's exp
    await expect(page.get_by_test_id("status")).to_have_text("live")
    await page.get_by_test_id("comment-input").fill("still here")
    await page.get_by_test_id("comment-input").press("Enter")
    await expect(page.get_by_test_id("comments")).to_contain_text("still here", timeout=3000)
    assert await page.get_by_test_id("comment-message").text_content() == ""


async def test_the_overlay_refreshes_its_token_through_the_sites_hook(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    fresh = token(settings, "ann")
    hook = f"window.liveGetToken = async () => {fresh!r};"
    page, exp = await _short_lived_viewer(browser, live, settings, hook)
    await _still_signed_in_after(page, exp)


async def test_the_overlay_takes_a_fresh_token_from_its_url_fragment(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    page, exp = await _short_lived_viewer(browser, live, settings)
    await page.evaluate(f"location.hash = 'token={token(settings, 'ann')}'")
    await expect(page).not_to_have_url(re.compile("token="))  # taken and removed from the URL
    await _still_signed_in_after(page, exp)


async def test_without_a_fresh_token_the_session_ends_at_exp(
    browser: Browser, live: LiveProcess, settings: Settings
) -> None:
    await seed_room(live, settings)
    page, exp = await _short_lived_viewer(browser, live, settings)
    await expect(page.get_by_test_id("status")).to_have_text(
        "refused · token_expired", timeout=int((exp - time.time() + 3) * 1000)
    )
    assert time.time() >= exp - 0.05
