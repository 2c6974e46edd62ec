"""After a fault: wait until holds and sweeps have settled, then judge the sale on the
invariants, reading PostgreSQL directly and the API. Every problem found is collected, so one
run shows every invariant that broke, not only the first."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from chaos_workload import Held, Workload
from live_env import REPO, live_env

from live.settings import Settings

SETTLE_S = 35.0  # holds expire in seconds; a stuck confirm is recovered after 3 x io_timeout_s


@dataclass(frozen=True)
class OrderRow:
    id: int
    reservation: str
    buyer: str
    qty: int


async def settle(work: Workload, within: float = SETTLE_S) -> tuple[dict[str, Any] | None, str]:
    """Until the sale has nothing `held` or `confirming`; the last figures and a problem, if any."""
    deadline, figures = time.monotonic() + within, None
    while time.monotonic() < deadline:
        figures = await work.figures()
        if figures is not None and figures["held"] == 0 and figures["confirming"] == 0:
            return figures, ""
        await asyncio.sleep(0.25)  # polling, bounded by the deadline
    return figures, f"not settled after {within:.0f}s: figures {_brief(figures)}"


async def reconcile(settings: Settings, sale_id: int) -> str:
    """`live reconcile <sale>` as a subprocess; a problem unless it exits 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "live.cli",
        "reconcile",
        str(sale_id),
        env=live_env(settings),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        return "live reconcile did not finish within 60s"
    if process.returncode != 0:
        return f"live reconcile exited {process.returncode}:\n{output.decode()[-1500:]}"
    return ""


async def orders_and_sale(settings: Settings, sale_id: int) -> tuple[list[OrderRow], int, int, int]:
    """PostgreSQL's orders of the sale, and its stock, sold and limit per buyer."""
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        schema = settings.database_schema
        sale = await conn.fetchrow(
            f"SELECT stock, sold, limit_per_buyer FROM {schema}.sales WHERE id = $1", sale_id
        )
        rows = await conn.fetch(
            f"SELECT id, reservation_id, buyer_id, qty FROM {schema}.orders WHERE sale_id = $1",
            sale_id,
        )
    finally:
        await conn.close()
    assert sale is not None
    orders = [OrderRow(r["id"], r["reservation_id"], r["buyer_id"], r["qty"]) for r in rows]
    return orders, sale["stock"], sale["sold"], sale["limit_per_buyer"]


async def judge(work: Workload, settings: Settings) -> list[str]:
    """Every invariant that does not hold once the sale has settled (empty: all hold)."""
    problems: list[str] = []
    figures, unsettled = await settle(work)
    if unsettled:
        problems.append(unsettled)
    orders, stock, sold, limit = await orders_and_sale(settings, work.sale_id)
    problems += _stores_agree(orders, stock, sold, limit)
    problems += _acks_are_orders(work, orders)
    if work.tally.bad:
        shown = "; ".join(work.tally.bad[:5])
        problems.append(f"{len(work.tally.bad)} answers broke the 503 rule, e.g. {shown}")
    summary = (
        f"(sale {work.sale_id}: stock {stock}, sold {sold}, {len(orders)} orders, "
        f"{len(work.acks)} acks, faults {work.faults}; {work.tally.summary()}; "
        f"figures {_brief(figures)})"
    )
    print(summary)  # shown by pytest -rP, and with a failure
    failed = await reconcile(settings, work.sale_id)
    if failed:
        problems.append(failed)
    if stock - sold > 0:
        problems += await _sells_again(work, settings)
    return [*problems, summary] if problems else []


def _stores_agree(orders: list[OrderRow], stock: int, sold: int, limit: int) -> list[str]:
    problems = []
    items = sum(o.qty for o in orders)
    if items != sold:
        problems.append(f"orders hold {items} items but sales.sold is {sold}")
    if sold > stock:
        problems.append(f"oversold: sold {sold} > stock {stock}")
    per_buyer: collections.Counter[str] = collections.Counter()
    for order in orders:
        per_buyer[order.buyer] += order.qty
    over = {buyer: n for buyer, n in per_buyer.items() if n > limit}
    if over:
        problems.append(f"buyers above the limit of {limit}: {dict(sorted(over.items()))}")
    return problems


def _acks_are_orders(work: Workload, orders: list[OrderRow]) -> list[str]:
    """Every 2xx confirm is that buyer's order of that reservation and qty, and one order."""
    problems = []
    by_reservation = {o.reservation: o for o in orders}
    named: dict[str, set[tuple[int, str]]] = collections.defaultdict(set)
    lost, foreign = [], []
    for ack in work.acks:
        named[ack.reservation].add((ack.order_id, ack.buyer))
        order = by_reservation.get(ack.reservation)
        if order is None:
            lost.append(ack.reservation)
        elif (order.id, order.buyer, order.qty) != (ack.order_id, ack.buyer, ack.qty):
            foreign.append(
                f"{ack.reservation}: answered {ack.buyer} x{ack.qty} as order {ack.order_id} "
                f"(body buyer {ack.body.get('buyer')}), PostgreSQL has order {order.id} "
                f"of {order.buyer} x{order.qty}"
            )
    if lost:
        problems.append(f"{len(lost)} acknowledged orders missing in PostgreSQL: {lost[:5]}")
    if foreign:
        problems.append(f"{len(foreign)} acknowledged orders are not that buyer's: {foreign[:3]}")
    twice = {r: sorted(n) for r, n in named.items() if len(n) > 1}
    if twice:
        problems.append(f"reservations acknowledged to different buyers or orders: {twice}")
    return problems


async def _sells_again(work: Workload, settings: Settings, within: float = 8.0) -> list[str]:
    """A fresh buyer reserves (201) and confirms (201) while stock is left."""
    deadline, answer, buyer = time.monotonic() + within, "", "fresh-buyer"
    while time.monotonic() < deadline:
        held = await work.reserve(buyer, 1, patience_s=2.0)
        if isinstance(held, Held):
            ack = await work.confirm(buyer, held, patience_s=5.0)
            if ack is None:
                return [f"the sale does not sell again: confirm of a fresh hold {held.id} failed"]
            orders, *_ = await orders_and_sale(settings, work.sale_id)
            if not any(o.id == ack.order_id and o.buyer == buyer for o in orders):
                return [f"the fresh buyer's order {ack.order_id} is not in PostgreSQL"]
            return []
        answer = held
        await asyncio.sleep(0.25)  # polling, bounded by the deadline
    return [f"the sale does not sell again though stock is left: reserve answers {answer!r}"]


def _brief(figures: dict[str, Any] | None) -> str:
    if figures is None:
        return "unavailable"
    keys = ("state", "stock", "remaining", "held", "confirming", "sold", "orders")
    return ", ".join(f"{k}={figures.get(k)}" for k in keys)
