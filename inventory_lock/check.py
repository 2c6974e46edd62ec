"""The invariant recomputed from a pool's keys (the reply of lua/dump.lua); pure, no I/O."""

from __future__ import annotations

from collections import Counter
from typing import Any

from inventory_lock.codec import pairs, record, text
from inventory_lock.results import CheckReport, HoldState

COUNTED = (HoldState.HELD, HoldState.OFFERED, HoldState.CONFIRMING, HoldState.CONFIRMED)
EXPIRING = (HoldState.HELD, HoldState.OFFERED)  # the holds DUE indexes
TEXT_META = ("run_id", "fenced")  # Redis run ids (see lua/_prelude.lua); every other field counts


def check_dump(pool: str, reply: list[Any] | None) -> CheckReport | None:
    if reply is None:
        return None
    meta_raw, holds_raw, buyers_raw, due_raw, confirming_raw, idem_raw, changes_raw = reply[:7]
    waiters_raw = reply[7]  # reply[8]: offers not told yet, ids that may have ended since
    meta = {key: int(value) for key, value in pairs(meta_raw) if key not in TEXT_META}
    meta.setdefault(HoldState.OFFERED.value, 0)  # pools made before the waitlist
    holds = [record(key, value) for key, value in pairs(holds_raw)]
    buyers = {key: int(value) for key, value in pairs(buyers_raw)}
    due = {key: int(float(text(score))) for key, score in pairs(due_raw)}
    problems: list[str] = []

    by_state: Counter[HoldState] = Counter()
    by_buyer: Counter[str] = Counter()
    for hold in holds:
        if hold.state in COUNTED:
            by_state[hold.state] += hold.qty
            by_buyer[hold.buyer] += hold.qty
    stock, remaining = meta["stock"], meta["remaining"]
    counters = {state: meta[state.value] for state in COUNTED}
    problems += [f"{name} is negative" for name in ("remaining", *COUNTED) if meta[name] < 0]
    if stock != remaining + sum(counters.values()):
        problems.append(f"stock {stock} != remaining {remaining} + {counters}")
    problems += [
        f"{state} counter {counters[state]} != records {by_state[state]}"
        for state in COUNTED
        if counters[state] != by_state[state]
    ]
    if remaining != stock - by_state.total():
        problems.append(f"remaining {remaining} != stock - records {by_state.total()}")
    if buyers != dict(by_buyer):
        wrong = sorted(set(buyers.items()) ^ set(by_buyer.items()))[:5]
        problems.append(f"buyer counters differ from records: {wrong}")
    problems += [
        f"buyer {buyer!r} has {qty} > limit {meta['limit']}"
        for buyer, qty in by_buyer.items()
        if qty > meta["limit"]
    ]
    held = {hold.id: hold.expires_at_ms for hold in holds if hold.state in EXPIRING}
    if due != held:
        problems.append(
            f"expiry index != held and offered holds: "
            f"{sorted(set(due.items()) ^ set(held.items()))[:5]}"
        )
    offers = [hold for hold in holds if hold.state is HoldState.OFFERED]
    if any(hold.qty != 1 for hold in offers):
        problems.append("an offered hold is not of one unit")
    if due and meta.get("next_due", 0) > min(due.values()):
        problems.append(f"next_due {meta['next_due']} is after the earliest expiry")
    confirming = {hold.id for hold in holds if hold.state is HoldState.CONFIRMING}
    if {text(hold_id) for hold_id in confirming_raw} != confirming:
        problems.append("confirming index != confirming holds")
    known = {hold.id for hold in holds}
    if any(text(hold_id) not in known for hold_id in idem_raw):
        problems.append("an idempotency key points to a missing hold")
    pending = sum(1 for raw in changes_raw if text(raw).startswith("pending|"))
    if pending != meta.get("changes_pending", 0):
        problems.append(f"changes_pending {meta.get('changes_pending', 0)} != records {pending}")
    return CheckReport(
        pool=pool,
        ok=not problems,
        problems=tuple(problems),
        stock=stock,
        remaining=remaining,
        held=counters[HoldState.HELD],
        confirming=counters[HoldState.CONFIRMING],
        confirmed=counters[HoldState.CONFIRMED],
        stock_changes_pending=pending,
        offered=counters[HoldState.OFFERED],
        waiting=len(waiters_raw) // 2,
    )
