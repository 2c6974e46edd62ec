"""Compare each sale's counts in Redis with its orders in PostgreSQL and say whether the
invariants hold: Redis `stock = remaining + held + offered + confirming + confirmed`
(recomputed from the hold records; `offered`: units offered to waitlisted buyers), PostgreSQL
`sold <= stock` and `sold = sum(orders)`, and confirmed in Redis equal to the orders in
PostgreSQL and the same stock in both (while the pool exists and no stock change is in
flight)."""

from __future__ import annotations

from dataclasses import dataclass

from flash_sales.store import SaleStore
from inventory_lock import InventoryLock


@dataclass(frozen=True)
class SaleReport:
    sale_id: int
    state: str
    stock: int
    sold: int
    order_items: int
    redis: str  # "ok", "absent" or the problems found
    remaining: int | None
    held: int | None
    confirming: int | None
    confirmed: int | None
    problems: tuple[str, ...]
    offered: int | None = None  # units offered to waitlisted buyers

    @property
    def ok(self) -> bool:
        return not self.problems


async def reconcile(store: SaleStore, lock: InventoryLock, sale_ids: list[int]) -> list[SaleReport]:
    reports = []
    for sale_id in sale_ids:
        sale = await store.get(sale_id)
        if sale is None:
            reports.append(
                SaleReport(
                    sale_id, "unknown", 0, 0, 0, "absent", None, None, None, None, ("no such sale",)
                )
            )
            continue
        figures = await store.figures(sale.id)
        problems: list[str] = []
        if sale.sold > sale.stock:
            problems.append(f"postgres sold {sale.sold} > stock {sale.stock}")
        if figures["items"] != sale.sold:
            problems.append(f"postgres sold {sale.sold} != items in orders {figures['items']}")
        over = await store.buyers_over_limit(sale.id, sale.limit_per_buyer)
        if over:
            problems.append(f"postgres: {len(over)} buyers above the limit, e.g. {over[:3]}")
        check = await lock.check(sale.pool)
        if check is None or not await lock.exists(sale.pool):
            reports.append(
                SaleReport(
                    sale.id,
                    sale.state.value,
                    sale.stock,
                    sale.sold,
                    figures["items"],
                    "absent",
                    None,
                    None,
                    None,
                    None,
                    tuple(problems),
                )
            )
            continue
        problems.extend(f"redis: {p}" for p in check.problems)
        if check.stock != sale.stock and not check.stock_changes_pending:
            problems.append(f"redis stock {check.stock} != postgres stock {sale.stock}")
        if (
            check.confirmed + check.confirming < figures["items"]
            or check.confirmed > figures["items"]
        ):
            problems.append(
                f"redis confirmed {check.confirmed} (+{check.confirming} confirming) "
                f"!= postgres orders {figures['items']}"
            )
        reports.append(
            SaleReport(
                sale.id,
                sale.state.value,
                sale.stock,
                sale.sold,
                figures["items"],
                "ok" if check.ok else "broken",
                check.remaining,
                check.held,
                check.confirming,
                check.confirmed,
                tuple(problems),
                check.offered,
            )
        )
    return reports


def render(reports: list[SaleReport]) -> str:
    header = (
        f"{'sale':>6} {'state':<9} {'stock':>6} {'sold':>6} {'orders':>6} {'remain':>6} "
        f"{'held':>5} {'offrd':>5} {'confm':>5} {'confd':>6}  verdict"
    )
    lines = [header]
    for r in reports:

        def cell(value: int | None, width: int) -> str:
            return f"{'-' if value is None else value:>{width}}"

        verdict = "ok" if r.ok else "BROKEN: " + "; ".join(r.problems)
        lines.append(
            f"{r.sale_id:>6} {r.state:<9} {r.stock:>6} {r.sold:>6} {r.order_items:>6} "
            f"{cell(r.remaining, 6)} {cell(r.held, 5)} {cell(r.offered, 5)} "
            f"{cell(r.confirming, 5)} {cell(r.confirmed, 6)}  {verdict}"
        )
    return "\n".join(lines)
