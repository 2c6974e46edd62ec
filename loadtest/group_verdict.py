"""The verdict of `live loadtest group-deal`, from PostgreSQL (the system of record), the deal's
final figures and what every buyer was answered:

- no partial group ever ordered: each formed group has exactly its size in members and one
  order per member (at the group price), every other group none; none is left forming;
- stock conserved: sold + held + filling + remaining = stock at the end, sold = the items in
  the orders = PostgreSQL's `sales.sold`;
- no buyer over the limit (their orders' items);
- every acknowledged join accounted for: a buyer whose last answered call about a group was a
  start or join is in that formed group's orders, or the group failed; one who left has no order
  of it; every order is of a join its buyer made (acknowledged or unanswered);
- `live reconcile` clean (flash_sales/group_deals/reconcile.py through the CLI).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg

from loadtest.auction_verdict import reconciled_row
from loadtest.group_crowd import Call
from loadtest.verdict import Reconciled, Row

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Record:
    final: dict[str, Any]  # the deal's figures as its stop answered
    calls: list[Call]
    groups: list[dict[str, Any]]  # id, state, size, members (PostgreSQL)
    orders: list[dict[str, Any]]  # buyer_id, group_id, qty, price_cents (PostgreSQL)
    sold: int  # sales.sold


async def read_record(
    database_url: str, schema: str, sale: int, final: dict[str, Any], calls: list[Call]
) -> Record:
    conn = await asyncpg.connect(
        database_url, timeout=CONNECT_TIMEOUT_S, server_settings={"search_path": schema}
    )
    try:
        groups = await conn.fetch(
            """SELECT g.id, g.state, g.size,
                      array(SELECT m.buyer_id FROM group_members m WHERE m.group_id = g.id)
                        AS members
               FROM groups g WHERE g.sale_id = $1 ORDER BY g.id""",
            sale,
        )
        orders = await conn.fetch(
            "SELECT buyer_id, group_id, qty, price_cents FROM orders WHERE sale_id = $1", sale
        )
        sold = await conn.fetchval("SELECT sold FROM sales WHERE id = $1", sale)
    finally:
        await conn.close()
    return Record(final, calls, [dict(g) for g in groups], [dict(o) for o in orders], int(sold))


def judge(record: Record, reconciled: Reconciled) -> list[Row]:
    return [
        _load(record),
        _whole_groups(record),
        _stock(record),
        _limit(record),
        _joins(record),
        reconciled_row(reconciled),
    ]


def _load(record: Record) -> Row:
    kinds = Counter(c.kind for c in record.calls)
    acked = Counter(c.kind for c in record.calls if c.answer == "ok")
    unanswered = sum(c.answer == "no_answer" for c in record.calls)
    over_ws = sum(c.via == "ws" for c in record.calls)
    states = Counter(g["state"] for g in record.groups)
    ok = acked["start"] > 0 and acked["join"] > 0 and states["formed"] > 0 and not unanswered
    return Row(
        "groups started, joined and left",
        ok,
        f"{len(record.calls)} calls ({over_ws} over WebSockets): starts {acked['start']}"
        f"/{kinds['start']}, joins {acked['join']}/{kinds['join']}, leaves {acked['leave']}"
        f"/{kinds['leave']} acknowledged, {unanswered} unanswered; groups {len(record.groups)}:"
        f" {states['formed']} formed, {states['failed']} failed",
    )


def _orders_of(record: Record) -> Counter[tuple[str, int]]:
    return Counter((o["buyer_id"], o["group_id"]) for o in record.orders)


def _whole_groups(record: Record) -> Row:
    orders = _orders_of(record)
    price = int(record.final["group_price_cents"])
    bad = []
    for group in record.groups:
        mine = {b for b, g in orders if g == group["id"]}
        count = sum(n for (_, g), n in orders.items() if g == group["id"])
        if group["state"] == "formed":
            whole = len(group["members"]) == group["size"] == count == len(mine)
            whole = whole and mine == set(group["members"])
        else:
            whole = count == 0 and group["state"] == "failed"
        if not whole:
            bad.append(
                f"{group['id']} {group['state']}: {len(group['members'])} members, {count} orders"
            )
    wrong_price = sum(o["price_cents"] != price or o["qty"] != 1 for o in record.orders)
    strays = sum(o["group_id"] is None for o in record.orders)
    return Row(
        "no partial group ever ordered",
        not bad and not wrong_price and not strays,
        f"{len(record.groups)} groups, {len(record.orders)} orders; broken: {bad[:5] or 'none'};"
        f" orders not of one item at the group price: {wrong_price}; without a group: {strays}",
    )


def _stock(record: Record) -> Row:
    final = record.final
    stock, sold, held = int(final["stock"]), int(final["sold"]), int(final["held"])
    remaining, filling = int(final["remaining"]), int(final["filling"])
    items = sum(int(o["qty"]) for o in record.orders)
    ok = sold + held + filling + remaining == stock and sold == items == record.sold
    return Row(
        "stock conserved",
        ok and held == 0 and filling == 0,
        f"stock {stock} = sold {sold} + held {held} + filling {filling} + remaining {remaining};"
        f" items in orders {items}, PostgreSQL sold {record.sold}",
    )


def _limit(record: Record) -> Row:
    limit = int(record.final["limit_per_buyer"])
    items: Counter[str] = Counter()
    for order in record.orders:
        items[order["buyer_id"]] += int(order["qty"])
    over = {buyer: n for buyer, n in items.items() if n > limit}
    return Row(
        "no buyer over the limit",
        not over,
        f"{len(items)} buyers bought, at most {max(items.values(), default=0)} items each"
        f" (limit {limit}); over: {sorted(over)[:5] or 'none'}",
    )


def _joins(record: Record) -> Row:
    """Each buyer's last answered word about each group against how the group ended."""
    last: dict[tuple[str, int], str] = {}
    unsure: set[tuple[str, int]] = set()  # an unanswered call about it: either way
    refused: dict[tuple[str, int], str] = {}  # the code of a join refused
    blind_starts: dict[str, str] = {}  # buyer -> how a start with no group id was answered
    for call in record.calls:
        if call.kind == "start" and call.group is None:
            blind_starts[call.user] = call.answer
            continue
        key = (call.user, call.group or 0)
        if call.answer == "ok":
            last[key] = "left" if call.kind == "leave" else "in"
        elif call.answer == "no_answer":
            unsure.add(key)
        elif call.kind == "join":
            refused[key] = call.answer
    states = {g["id"]: g["state"] for g in record.groups}
    orders = _orders_of(record)
    lost, kept, told_no, unasked = [], [], [], []
    for key, word in last.items():
        if key in unsure:
            continue
        if word == "in" and not (orders[key] == 1 or states.get(key[1]) == "failed"):
            lost.append(key)
        if word == "left" and orders[key]:
            kept.append(key)
    for key in orders:
        if key in last or key in unsure or blind_starts.get(key[0]) == "no_answer":
            continue
        if key in refused or key[0] in blind_starts:  # told no, yet ordered
            told_no.append((*key, refused.get(key, f"start {blind_starts.get(key[0])}")))
        else:
            unasked.append(key)
    stayed = sum(word == "in" for word in last.values())
    return Row(
        "every acknowledged join accounted for",
        not lost and not kept and not told_no and not unasked,
        f"{stayed} joins kept to the end, {len(last) - stayed} left; in neither a formed group's"
        f" orders nor a failed group: {lost[:5] or 'none'}; ordered after leaving:"
        f" {kept[:5] or 'none'}; ordered though refused: {len(told_no)} {told_no[:3] or ''};"
        f" orders without a join: {unasked[:5] or 'none'}",
    )
