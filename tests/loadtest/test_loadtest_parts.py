"""The load tester's pure parts: tallies that add up across workers, the verdict's arithmetic
(a broken invariant is reported as broken), durations, options."""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace
from typing import Any

import pytest

from loadtest import cli, summary, verdict
from loadtest.params import Params
from loadtest.tally import Tally, bucket, percentile


def test_tallies_merge_like_one() -> None:
    one, two, total = Tally(), Tally(), Tally()
    for ms in range(100):
        one.lag_ms(ms)
    for ms in (150, 1234, 5):
        two.lag_ms(ms)
    one.add("reserve", 3)
    two.add("reserve", 2)
    one.high("max_owned_per_buyer", 1)
    two.high("max_owned_per_buyer", 2)
    total.merge(one.drain())
    total.merge(two.drain())
    assert total.counts["reserve"] == 5
    assert total.highs["max_owned_per_buyer"] == 2
    assert sum(total.lag.values()) == 103
    assert total.lag[1200] == 1 and total.lag[150] == 1
    assert sum(row["reserve"] for row in total.series()) == 5
    assert not one.counts and not one.lag and not one.seconds


def test_percentiles_round_like_locust() -> None:
    assert [bucket(x) for x in (0.4, 57.6, 123, 1234, -3)] == [0, 58, 120, 1200, 0]
    histogram = {10: 98, 200: 1, 900: 1}
    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.99) == 200
    assert percentile(histogram, 1.0) == 900
    assert percentile({}, 0.99) is None


def _figures(**changes: int) -> dict[str, Any]:
    figures = {
        "stock": 20,
        "sold": 14,
        "remaining": 6,
        "held": 0,
        "confirming": 0,
        "orders": 14,
        "limit_per_buyer": 1,
    }
    figures.update(changes)
    return figures


def _summary(**counts: int) -> dict[str, Any]:
    base = {"reserve": 100, "reserve_hold": 20, "confirm_ok": 14}
    base.update(counts)
    return {"counts": base, "highs": {"max_owned_per_buyer": 1}}


OK = verdict.Reconciled(True, 0, "sale ...\n 1 open 20 14 14 6 0 0 14 ok")


def _failed(rows: list[verdict.Row]) -> list[str]:
    return [row.name for row in rows if not row.ok]


def test_a_sound_sale_passes() -> None:
    assert _failed(verdict.invariants(_figures(), _summary(), OK, buyers=50)) == []


@pytest.mark.parametrize(
    ("figures", "counts", "broken"),
    [
        (_figures(sold=21, remaining=0, orders=21), {"confirm_ok": 21}, "sold <= stock"),
        (_figures(), {"confirm_ok": 13}, "orders = confirmed"),
        (_figures(remaining=7), {}, "every hold accounted for"),
        (_figures(held=2, remaining=4), {}, "expired holds returned to stock"),
        (_figures(), {"reserve_hold": 0}, "sale opened and took holds"),
    ],
)
def test_a_broken_invariant_fails(
    figures: dict[str, Any], counts: dict[str, int], broken: str
) -> None:
    assert broken in _failed(verdict.invariants(figures, _summary(**counts), OK, buyers=50))


def test_a_buyer_over_the_limit_fails() -> None:
    over = {"counts": _summary()["counts"], "highs": {"max_owned_per_buyer": 2}}
    assert _failed(verdict.invariants(_figures(), over, OK, buyers=50)) == [
        "no buyer over the limit"
    ]
    broken = verdict.Reconciled(True, 1, "BROKEN: redis: buyer 'b' has 2 > limit 1")
    assert _failed(verdict.invariants(_figures(), _summary(), broken, 50)) == ["live reconcile"]


def test_thresholds() -> None:
    types = {
        "reserve": {"count": 100, "failures": 2, "p99": 80.0},
        "confirm": {"count": 10, "failures": 0, "p99": 300.0},
        "WS event": {"count": 10_000, "failures": 0, "p99": 40.0},
    }
    tally = Tally()
    tally.lag_ms(40)
    checks = summary.thresholds(Params(max_p99_ms=100, max_error_rate=0.01), types, tally)
    assert {c.name: c.ok for c in checks} == {
        "reserve p99 ms": True,
        "confirm p99 ms": False,
        "fan-out lag p99 ms": True,
        "error rate": False,  # 2 of 110 actions; WS events are measurements, not actions
    }
    assert summary.thresholds(Params(), types, tally) == []


def test_durations() -> None:
    assert [cli.duration(x) for x in ("20s", "2m", "1h30m", "90", "1m5s")] == [
        20,
        120,
        5400,
        90,
        65,
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        cli.duration("soon")


def test_params_from_locust_options() -> None:
    options = SimpleNamespace(live_room="r", live_sale="7", live_confirm_share=0.5, other=1)
    params = Params.from_options(options)
    assert (params.room, params.sale, params.confirm_share, params.stock) == ("r", 7, 0.5, 100)
    assert Params(hold_seconds=2, think_min=0.5, think_max=3).think_range() == (0.5, 1.0)


def test_flags_are_checked() -> None:
    assert cli.main(["loadtest", "flash-sale", "--stock", "2", "--limit", "3"]) == 2
    assert cli.main(["loadtest", "flash-sale", "--confirm-share", "1.5"]) == 2


def test_cpu_meter_counts_this_process() -> None:
    import os

    from loadtest import cpu

    meter = cpu.CpuMeter({"me": lambda: [os.getpid()]})
    meter.sample()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        sum(range(10_000))
    meter.sample()
    cores = meter.cores()
    if not meter.available:
        pytest.skip("no /proc here")
    assert 0 < cores["me"] <= cores["machine"] + 0.5
    assert "me " in cpu.describe(cores)
    assert cpu.describe({}) == "not measured"


def test_a_run_the_load_generator_could_not_keep_up_with_fails() -> None:
    run = {"counts": {"first_connects": 10}, "started": 1000.0, "highs": {"first_connect_ms": 1e6}}
    for broken in ({"restarts": 1}, {"generator_cpu_high": True}):
        rows = verdict.load_checks({**run, **broken}, users=10, within_s=30)
        assert _failed(rows) == ["load generator kept up"]
    assert verdict.thresholds({"thresholds": []}, locust_code=0) == []
    assert _failed(verdict.thresholds({"thresholds": []}, locust_code=2)) == ["locust run"]


def test_a_run_whose_load_did_not_get_through_fails() -> None:
    counts = {"first_connects": 250, "reserve": 10, "reserve_hold": 4, "reserve_sold_out": 5}
    counts |= {"reserve_no_answer": 1, "confirm": 2, "confirm_ok": 1, "confirm_expired": 1}
    run = {"counts": counts, "started": 1000.0, "highs": {"first_connect_ms": 1_029_500}}
    connected = "every user connected within 30 s"
    assert _failed(verdict.load_checks(run, users=250, within_s=30)) == []
    assert _failed(verdict.load_checks(run, users=300, within_s=30)) == [connected]
    late = {**run, "highs": {"first_connect_ms": 1_030_500}}  # the last one 30.5 s in
    assert _failed(verdict.load_checks(late, users=250, within_s=30)) == [connected]
    counts["reserve"] = 12  # two started, never answered
    assert _failed(verdict.load_checks(run, users=250, within_s=30)) == ["every request answered"]
