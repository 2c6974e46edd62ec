"""The verdict of `live loadtest auction`, from the server's own record of the run:

- the winner is the highest valid bid: of everyone's accepted calls, the winner's maximum (the
  bid, or its hidden `max_cents`) is the highest, and the price is the highest accepted bid;
- no bid accepted after the deadline by the server's clock: the deadline is replayed bid by bid
  from the one the start announced (a bid in the snipe window moves it to that bid's time plus
  the window, until the cap), and every accepted bid came before the deadline then in force;
- every extension applied and capped: the replay ends at the auction's final deadline and
  extension count, never past the cap;
- at most one order (a retried confirm returns the same one), and `live reconcile` clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from loadtest.auction_crowd import Call
from loadtest.verdict import Reconciled, Row


@dataclass(frozen=True)
class Record:
    opened: dict[str, Any]  # the auction as its start answered: the first deadline
    final: dict[str, Any]  # the auction at the end
    ladder: list[dict[str, Any]]  # every accepted bid in server order (host's list)
    offers: list[dict[str, Any]]  # every bidder's offers, with "user"
    calls: list[Call]
    confirms: list[dict[str, Any]]  # each confirm's reply or error frame, with "user"
    max_extensions: int


def judge(record: Record, reconciled: Reconciled) -> list[Row]:
    return [
        _load(record),
        _winner(record),
        *_deadline(record),
        _orders(record),
        reconciled_row(reconciled),
    ]


def _load(record: Record) -> Row:
    snipes = [c for c in record.calls if c.kind == "snipe"]
    accepted = sum(c.answer == "accepted" for c in record.calls)
    answered = sum(c.answer != "no_answer" for c in record.calls)
    return Row(
        "bids placed and answered",
        bool(record.ladder) and answered == len(record.calls),
        f"{len(record.calls)} calls ({len(snipes)} snipes in a last second), {accepted} accepted,"
        f" {len(record.calls) - answered} unanswered; {len(record.ladder)} bids on the ladder",
    )


def _winner(record: Record) -> Row:
    """Each bidder's maximum over their accepted calls; the winner's must be the highest."""
    tops: dict[str, int] = {}
    for call in record.calls:
        if call.answer == "accepted":
            top = max(call.amount_cents, call.max_cents or 0)
            tops[call.user] = max(tops.get(call.user, 0), top)
    winner = next((o["user"] for o in record.offers if not o["second_chance"]), None)
    price = record.final["price_cents"]
    highest_bid = max((b["amount_cents"] for b in record.ladder), default=None)
    if not tops:
        return Row("winner is the highest valid bid", winner is None, "no accepted bid")
    best = max(tops.values())
    ok = winner is not None and tops.get(winner) == best and price == highest_bid
    ok = ok and price is not None and price <= best
    return Row(
        "winner is the highest valid bid",
        ok,
        f"winner {winner} (maximum {tops.get(winner or '')}), highest maximum {best};"
        f" price {price}, highest accepted bid {highest_bid}",
    )


def _deadline(record: Record) -> list[Row]:
    """The deadline replayed from the start's over the ladder (one call's bids share a time)."""
    window = int(record.final["snipe_window_s"] * 1000)
    cap = record.max_extensions
    deadline, extensions, late = int(record.opened["ends_at"]), 0, []
    for at, bids in groupby(record.ladder, key=lambda b: int(b["accepted_at"])):
        seqs = [b["seq"] for b in bids]
        if at >= deadline:
            late += seqs
        elif at + window > deadline and extensions < cap:
            deadline, extensions = at + window, extensions + 1
    final_end, final_ext = int(record.final["ends_at"]), int(record.final["extensions"])
    after = [c for c in record.calls if c.kind == "late"]  # sent just after the end they knew
    refused = sum(c.answer in ("ended", "not_open") for c in after)
    return [
        Row(
            "no bid accepted after the deadline",
            not late,
            f"{len(record.ladder)} bids replayed against the deadline by the server's clock;"
            f" accepted late: {late[:5] or 'none'}; {refused} of {len(after)} bids sent just"
            " after the end refused",
        ),
        Row(
            "every extension applied and capped",
            (deadline, extensions) == (final_end, final_ext) and final_ext <= cap,
            f"replayed {extensions} extensions to {deadline}; the auction: {final_ext} (cap {cap})"
            f" to {final_end}",
        ),
    ]


def _orders(record: Record) -> Row:
    orders = {c["data"]["id"] for c in record.confirms if c.get("ok")}
    decided = [o for o in record.offers if o["state"] == "order"]
    won = bool(record.final["bids"]) and bool(record.final["reserve_met"])
    ok = len(orders) <= 1 and len(decided) <= 1 and (len(orders) == 1) == won
    return Row(
        "at most one order",
        ok,
        f"{len(orders)} order id(s) over {len(record.confirms)} confirms; {len(decided)} offer(s)"
        f" decided as an order",
    )


def reconciled_row(reconciled: Reconciled) -> Row:
    if not reconciled.ran:
        return Row("live reconcile", True, "skipped (--skip-reconcile)")
    tail = reconciled.output.splitlines()[-1] if reconciled.output else ""
    return Row("live reconcile", reconciled.code == 0, tail[:200])
