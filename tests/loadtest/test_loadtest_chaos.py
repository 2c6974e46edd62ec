"""The chaos load test's pure parts: which faults a run can reach, their schedule over the time
the sale sells, and each fault's verdict (503s in its window, time until the sale sold again)."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import pytest

from loadtest import chaos, cli, impact, verdict
from loadtest.impact import Call
from loadtest.params import buy_margin_s

SIZING = chaos.Sizing()
FIVE = ("redis-restart", "redis-rollback", "redis-flush", "pg-stall", "worker-kill")


def test_faults_are_parsed_in_order() -> None:
    assert chaos.parse("pg-stall, redis-restart") == ("pg-stall", "redis-restart")
    assert chaos.parse("all") == chaos.FAULTS
    assert chaos.parse("pg-cut,pg-cut") == ("pg-cut", "pg-cut")
    for bad in ("redis-reboot", "", ","):
        with pytest.raises(chaos.ChaosError):
            chaos.parse(bad)


def test_faults_out_of_reach_are_named() -> None:
    assert chaos.unreachable(chaos.FAULTS, own_service=True, database=True) is None
    remote = chaos.unreachable(("pg-stall", "redis-flush"), own_service=False, database=True)
    assert remote is not None and "redis-flush" in remote and "pg-stall" not in remote
    no_db = chaos.unreachable(("pg-stall", "pg-cut"), own_service=False, database=False)
    assert no_db is not None and "--database-url" in no_db
    assert chaos.unreachable(("pg-stall",), own_service=False, database=True) is None


def test_the_schedule_spreads_faults_over_the_selling_time() -> None:
    window = 60.0
    plan = chaos.schedule(FIVE, window, SIZING)
    assert [p.name for p in plan] == list(FIVE)
    times = [p.at_s for p in plan]
    assert times == sorted(times) and times[0] >= SIZING.lead_s
    for planned, following in itertools.pairwise(plan):
        # room for the fault itself and for the sale to sell again before the next one
        gap = following.at_s - SIZING.before(following.name) - planned.at_s
        assert gap >= SIZING.lasts(planned.name) + SIZING.recover_s - 1e-6
    last = plan[-1]
    assert last.at_s + SIZING.lasts(last.name) + SIZING.recover_s <= window + 1e-6
    rollback = plan[1]
    assert rollback.snapshot_at_s == pytest.approx(rollback.at_s - SIZING.rollback_back_s)
    assert rollback.snapshot_at_s is not None
    assert rollback.snapshot_at_s >= SIZING.lead_s  # taken after the sale opened
    assert all(p.snapshot_at_s is None for p in plan if p.name != "redis-rollback")


def test_a_schedule_that_does_not_fit_says_how_long_it_needs() -> None:
    with pytest.raises(chaos.ChaosError, match="longer --duration"):
        chaos.schedule(FIVE, 20.0, SIZING)
    least = chaos.min_duration_s(FIVE, 3.0, SIZING)
    assert chaos.schedule(FIVE, chaos.selling_s(least, 3.0), SIZING)
    assert chaos.selling_s(60, 3.0) == 60 - 3.0 - buy_margin_s(60)
    assert SIZING.stall_s == 2 * SIZING.io_timeout_s  # confirms waiting for the row time out


def _args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["loadtest", "flash-sale", *flags])


def test_chaos_flags_are_checked() -> None:
    assert cli.main(["loadtest", "flash-sale", "--chaos", "redis-flush", "--url", "http://h"]) == 2
    assert cli.main(["loadtest", "flash-sale", "--chaos", "all", "--duration", "20s"]) == 2
    args = _args("--chaos", "worker-kill", "--duration", "60s")
    assert cli._check(args) is None and args.serve_workers == 2
    remote = _args("--chaos", "pg-stall", "--url", "http://h", "--database-url", "postgresql://x")
    assert "--duration" in (cli._check(remote) or "")
    remote.duration = 60
    assert cli._check(remote) is None


def _call(started: float, answered: float, kind: str, status: int, code: str = "") -> Call:
    return Call(started, answered, kind, status, code or f"http_{status}")


def _fault(name: str, at: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "at": at, "took_s": 1.0, "error": "", **extra}


def test_a_faults_503s_and_its_recovery() -> None:
    calls = [
        _call(99.0, 99.5, "confirm", 201),  # before the fault: not counted
        _call(100.2, 100.3, "reserve", 503, "unavailable"),
        _call(100.5, 101.0, "confirm", 503, "unavailable"),
        _call(100.9, 101.0, "confirm", 500, "internal_error"),
        _call(101.0, 103.0, "confirm", 0, "no_answer"),
        _call(101.5, 102.0, "reserve", 201),  # first hold: 2.0 s after the fault
        _call(102.5, 104.5, "confirm", 201),  # first order: 4.5 s after the fault
        _call(110.2, 110.3, "confirm", 503, "unavailable"),  # the next fault's
        _call(110.5, 111.0, "confirm", 201),
    ]
    found = impact.impacts(
        [_fault("redis-restart", 100.0), _fault("pg-cut", 110.0)],
        calls,
        run_start=90.0,
        run_end=130.0,
        sale_opened=95.0,
    )
    first, second = found
    assert (first.at_s, first.into_sale_s) == (10.0, 5.0)
    assert (first.unavailable, first.server_errors, first.no_answer) == (2, 1, 1)
    assert (first.first_hold_s, first.first_order_s, first.recovered_s) == (2.0, 4.5, 4.5)
    assert first.ok and "sold again after 4.5 s" in first.detail
    assert (second.unavailable, second.recovered_s, second.ok) == (1, 1.0, True)
    assert first.row(1).name == "fault 1: redis-restart"


def test_a_fault_after_which_the_sale_never_sold_again_fails() -> None:
    calls = [
        _call(101.0, 101.1, "reserve", 409, "not_open"),
        _call(102.0, 102.1, "reserve", 409, "not_open"),
        _call(103.0, 103.1, "confirm", 503, "unavailable"),
    ]
    (dead,) = impact.impacts([_fault("redis-flush", 100.0)], calls, 90.0, 130.0, None)
    assert not dead.ok and dead.recovered_s is None
    assert "never sold again" in dead.detail and "reserve not_open x2" in dead.detail


def test_a_fault_with_nothing_left_to_sell_or_nobody_buying_passes() -> None:
    sold_out = [_call(101.0, 101.1, "reserve", 409, "sold_out")]
    (late,) = impact.impacts([_fault("pg-cut", 100.0)], sold_out, 90.0, 130.0, None)
    assert late.ok and "nothing left to buy" in late.detail
    (idle,) = impact.impacts([_fault("pg-cut", 100.0)], [], 90.0, 130.0, None)
    assert idle.ok and "no buyer tried" in idle.detail
    holds_only = [_call(101.0, 101.4, "reserve", 201)]  # nobody confirmed after it
    (held,) = impact.impacts([_fault("pg-cut", 100.0)], holds_only, 90.0, 130.0, None)
    assert held.ok and held.recovered_s == pytest.approx(1.4)
    confirm_stuck = [*holds_only, _call(102.0, 107.0, "confirm", 503, "unavailable")]
    (stuck,) = impact.impacts([_fault("pg-stall", 100.0)], confirm_stuck, 90.0, 130.0, None)
    assert not stuck.ok  # holds came back, orders never did


def test_recovery_counts_only_calls_started_once_the_fault_was_in_place() -> None:
    calls = [
        _call(100.0, 100.01, "confirm", 201),  # slipped in before the row was locked
        _call(100.2, 110.1, "confirm", 201),
    ]
    (stall,) = impact.impacts(
        [_fault("pg-stall", 100.0, effective=100.1)], calls, 90.0, 130.0, None
    )
    assert stall.recovered_s == pytest.approx(10.1)


def test_a_fault_that_could_not_be_injected_fails() -> None:
    (failed,) = impact.impacts(
        [_fault("worker-kill", 100.0, error="FaultError: no uvicorn worker")], [], 90, 130, None
    )
    assert not failed.ok and "not injected" in failed.detail


def test_calls_round_trip_from_json_lists() -> None:
    assert impact.calls_from([[1.0, 2.0, "reserve", 201, "http_201"]]) == [
        Call(1.0, 2.0, "reserve", 201, "http_201")
    ]


def _summary(**counts: int) -> dict[str, Any]:
    base = {"reserve": 100, "reserve_hold": 20, "confirm_ok": 14}
    base.update(counts)
    return {"counts": base, "highs": {"max_owned_per_buyer": 2, "max_orders_per_buyer": 1}}


FIGURES = {
    "stock": 20,
    "sold": 14,
    "remaining": 6,
    "held": 0,
    "confirming": 0,
    "orders": 14,
    "limit_per_buyer": 1,
}
OK = verdict.Reconciled(True, 0, "ok")


def _failed(rows: list[verdict.Row]) -> list[str]:
    return [row.name for row in rows if not row.ok]


def test_chaos_invariants() -> None:
    # A hold a fault made the service forget is not owned: with chaos, orders decide the limit.
    assert _failed(verdict.invariants(FIGURES, _summary(), OK, 50)) == ["no buyer over the limit"]
    assert _failed(verdict.invariants(FIGURES, _summary(), OK, 50, chaos=True)) == []
    errors = _summary(server_errors=3, server_error_confirm_500=2, server_error_host_502=1)
    rows = verdict.invariants(FIGURES, errors, OK, 50, chaos=True)
    assert _failed(rows) == ["no 5xx but 503"]
    assert "confirm 500 x2" in next(r.detail for r in rows if r.name == "no 5xx but 503")
    unavailable = _summary(unavailable=40, unavailable_reserve=30, unavailable_confirm=10)
    assert _failed(verdict.invariants(FIGURES, unavailable, OK, 50, chaos=True)) == []
    foreign = _summary(confirm_foreign=1)
    assert _failed(verdict.invariants(FIGURES, foreign, OK, 50, chaos=True)) == [
        "acknowledged orders are the buyer's"
    ]
