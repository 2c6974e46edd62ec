"""`live reconcile` as an operator runs it, against the test's own Redis and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import httpx
from live_env import live_env
from sale_kit import confirm, open_sale, reserve

from live.settings import Settings


def run_reconcile(settings: Settings, *sale_ids: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "live.cli", "reconcile", *map(str, sale_ids)],
        env=live_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_reconcile_passes_then_catches_a_broken_invariant(
    server: str, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        sale = await open_sale(client, settings, stock=4)
        for n in range(2):
            held = await reserve(client, settings, sale["id"], f"b{n}")
            assert (await confirm(client, settings, held.json()["id"], f"b{n}")).status_code == 201
        await reserve(client, settings, sale["id"], "holder")

    good = run_reconcile(settings)
    assert good.returncode == 0, good.stdout + good.stderr
    row = good.stdout.splitlines()[1].split()
    # sale, state, stock, sold, orders, remaining, held, offered, confirming, confirmed
    assert row[:10] == [str(sale["id"]), "open", "4", "2", "2", "1", "1", "0", "0", "2"]
    assert row[10] == "ok"

    conn = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": settings.database_schema}
    )
    try:  # an order PostgreSQL has but Redis never confirmed
        await conn.execute(
            "INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents, total_cents,"
            " payment_ref) VALUES ('ghost', $1, 'x', 1, 500, 500, 'p')",
            sale["id"],
        )
        await conn.execute("UPDATE sales SET sold = sold + 1 WHERE id = $1", sale["id"])
    finally:
        await conn.close()
    bad = run_reconcile(settings, sale["id"])
    assert bad.returncode == 1
    assert "BROKEN" in bad.stdout and "redis confirmed 2" in bad.stdout
