"""Key naming, validation and reply parsing, without Redis."""

from __future__ import annotations

from dataclasses import replace

import pytest
from redis.crc import key_slot

from inventory_lock import (
    Adopted,
    Hold,
    HoldState,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    Snapshot,
    pool_of,
)
from inventory_lock.check import check_dump
from inventory_lock.codec import (
    adopted_reply,
    pool_change_reply,
    record,
    reserve_replies,
    snapshot_reply,
)
from inventory_lock.keys import PoolKeys, check_prefix, hold_ms_of, valid_count, valid_text


def test_pool_keys_share_one_cluster_slot() -> None:
    keys = PoolKeys.of("live:", "sale-42")
    assert keys.meta == "live:{sale:sale-42}:meta"
    assert len({key_slot(key.encode()) for key in keys.all}) == 1
    assert len(set(keys.all)) == 9  # meta ... changes, waiters, offers


def test_pool_of_reads_the_pool_from_a_hold_id() -> None:
    assert pool_of("sale_7-b.1795616152932820-0123456789abcdef") == "sale_7-b"
    assert pool_of("sale_7-b.1795616152932820") == "sale_7-b"  # made before ids had a nonce
    assert pool_of("p" * 64 + "." + "9" * 18 + "-" + "f" * 16) == "p" * 64
    for bad in [
        "",
        "x",
        "x.",
        ".1",
        "a.b.1",
        "a b.1",
        "a.1x",
        "a." + "1" * 19,
        "p" * 65 + ".1",
        "a.1-",
        "a.-0123456789abcdef",
        "a.1-0123456789abcde",
        "a.1-0123456789abcdef0",
        "a.1-0123456789ABCDEF",
        "a.1-0123456789abcdeg",
        "a.1-0123456789abcdef-1",
        "a.1_0123456789abcdef",
        "a.1-0123456789abcdef\n",
    ]:
        with pytest.raises(ValueError):
            pool_of(bad)


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (30, 30_000),
        (0.25, 250),
        (0.001, 1),
        (86_400, 86_400_000),
        (0, None),
        (0.0004, None),
        (86_401, None),
        (-1, None),
        (float("nan"), None),
        (True, None),
        ("1", None),
    ],
)
def test_hold_time_in_ms(seconds: object, ms: int | None) -> None:
    assert hold_ms_of(seconds) == ms


def test_validation_rules() -> None:
    assert valid_text("b" * 200) and not valid_text("b" * 201) and not valid_text("")
    assert not valid_text("é" * 101) and not valid_text("\ud800") and not valid_text(5)
    assert valid_count(1) and not valid_count(0) and not valid_count(True)
    assert not valid_count(1.0) and valid_count(0, minimum=0)
    assert check_prefix("t_ab:") == "t_ab:"
    with pytest.raises(ValueError):
        check_prefix("a{b}")


def test_record_keeps_a_buyer_with_separators() -> None:
    parsed = record("p.12", b"confirming|3|1700000000123|1700000000001|odd|buyer|")
    assert (parsed.pool, parsed.state, parsed.qty) == ("p", HoldState.CONFIRMING, 3)
    assert (parsed.buyer, parsed.expires_at_ms) == ("odd|buyer|", 1700000000123)


RUN_ID = b"7858c1e0a921696359dca23eb83b28ede3b35c23"


def _dump(remaining: int, held_counter: int, due_score: str, next_due: int = 0) -> list[object]:
    meta: list[str | bytes] = ["stock", "5", "remaining", str(remaining), "held", str(held_counter)]
    meta += ["confirming", "0", "confirmed", "2", "limit", "3", "next_due", str(next_due)]
    meta += ["run_id", RUN_ID, "fenced", RUN_ID + b":repair-1"]  # text, not counts
    meta += ["fence_until", "1700000000123"]
    holds = [b"p.1", b"held|1|900|100|ann", b"p.2", b"confirmed|2|900|100|bob"]
    holds += [b"p.3", b"expired|4|900|100|ann"]
    changes: list[bytes] = []  # stock change records
    waitlist: list[list[bytes]] = [[], []]  # waiters, offers not told yet
    due = [b"p.1", due_score]
    return [meta, holds, [b"ann", b"1", b"bob", b"2"], due, [], [b"p.1"], changes, *waitlist]


def test_check_recomputes_from_records() -> None:
    good = check_dump("p", _dump(2, 1, "900"))
    assert good is not None and good.ok and (good.held, good.confirmed) == (1, 2)
    bad = check_dump("p", _dump(3, 2, "901"))
    assert bad is not None and not bad.ok and len(bad.problems) >= 3
    assert check_dump("p", None) is None


def test_check_wants_next_due_no_later_than_the_earliest_expiry() -> None:
    for next_due, ok in [(0, True), (900, True), (901, False)]:
        report = check_dump("p", _dump(2, 1, "900", next_due))
        assert report is not None and report.ok is ok, report


def test_reserve_replies_in_request_order() -> None:
    held = [b"hold", b"p.7", b"held|2|900|100|ann", 3, 1]
    answers = reserve_replies("p", [held, [b"rejected", b"limit"]], 2)
    assert answers == [
        Hold("p.7", "p", "ann", 2, 900, 3, HoldState.HELD, replay=True),
        Rejection(RejectReason.LIMIT),
    ]
    decoded = reserve_replies("p", [["hold", "p.8", "confirmed|1|9|1|a|b", 0, 0]], 1)
    assert decoded == [Hold("p.8", "p", "a|b", 1, 9, 0, HoldState.CONFIRMED)]
    replies = [[b"rejected", b"stale"], [b"rejected", b"fenced"], [b"rejected", b"invalid"]]
    assert reserve_replies("p", replies, 3) == [
        Rejection(RejectReason.STALE),
        Rejection(RejectReason.FENCED),
        Rejection(RejectReason.INVALID),
    ]
    invalid = reserve_replies("p", [b"rejected", b"invalid"], 3)
    assert invalid == [Rejection(RejectReason.INVALID)] * 3
    with pytest.raises(ValueError):
        reserve_replies("p", [held], 2)


def test_check_reports_over_promised_stock_and_a_buyer_over_the_limit() -> None:
    """What a repair may leave (adopt records every order): the counts add up, yet remaining is
    below zero and a buyer is above the limit."""
    meta: list[str | bytes] = ["stock", "3", "remaining", "-1", "held", "0", "confirming", "0"]
    meta += ["confirmed", "4", "limit", "3", "run_id", RUN_ID]
    holds = [b"p.1-0123456789abcdef", b"confirmed|4|900|100|ann"]
    report = check_dump("p", [meta, holds, [b"ann", b"4"], [], [], [], [], [], []])
    assert report is not None and not report.ok
    assert report.problems == ("remaining is negative", "buyer 'ann' has 4 > limit 3")
    assert (report.remaining, report.confirmed) == (-1, 4)


def test_snapshot_and_adopt_replies() -> None:
    figures = [10, b"4", b"1", b"0", b"5", b"0", b"2", b"30000", 3]
    ok = Snapshot("p", 10, 4, 1, 0, 5, 3, False, 2, 30000)
    for state, stale, fenced in [
        (b"ok", False, False),
        ("stale", True, False),
        (b"fenced", False, True),
    ]:
        # then: stock changes pending, offered, waiting
        snapshot = snapshot_reply("p", [*figures, state, b"0", b"1", 2])
        assert snapshot == replace(ok, stale=stale, fenced=fenced, offered=1, waiting=2), state
    assert snapshot_reply("p", None) is None
    assert adopted_reply("p", [2, 3, 1, b"-2"]) == Adopted("p", 2, 3, 1, -2)
    assert adopted_reply("p", [0, 0, 0, "7"]) == Adopted("p", 0, 0, 0, 7)
    assert adopted_reply("p", [b"rejected", b"unknown_pool"]) == PoolChange(
        "p", False, PoolReason.UNKNOWN_POOL
    )
    assert adopted_reply("p", ["rejected", "invalid"]) == PoolChange("p", False, PoolReason.INVALID)
    assert pool_change_reply("p", [1, b"created"]) == PoolChange("p", True, PoolReason.CREATED)
    assert pool_change_reply("p", [0, b"stale"]) == PoolChange("p", False, PoolReason.STALE)
