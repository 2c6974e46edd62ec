"""`live loadtest flash-sale` end to end, as a user runs it: the command starts its own service
(embedded Redis and PostgreSQL), runs locust (a master and a worker) and judges the run; with
--chaos it also injects faults into the servers it started."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from loadtest_kit import run_loadtest

# Looked up, never imported: importing locust monkey-patches this whole pytest process (gevent).
for _module in ("locust", "geventhttpclient"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (the `load` extra)", allow_module_level=True)

COMMAND = [sys.executable, "-m", "loadtest.cli", "loadtest", "flash-sale"]
RUN_TIMEOUT_S = 240


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_loadtest("flash-sale", out, *flags, timeout_s=RUN_TIMEOUT_S)


def _non_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def test_flash_sale_simulation_passes_its_invariants(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = _run(
        out,
        *("--viewers", "200", "--buyers", "50", "--stock", "20", "--limit", "1"),
        *("--hold-seconds", "5", "--duration", "20s", "--spawn-rate", "60", "--workers", "1"),
        *("--max-error-rate", "0.05"),  # headroom on a busy machine: the invariants are judged
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "verdict: PASS" in done.stdout
    # The load tester's p99 beside the server's own, and what the generator cost.
    assert "vs the server's /metrics" in done.stdout
    assert "µs CPU per viewer-second" in done.stdout

    record = json.loads((out / "verdict.json").read_text())
    assert record["ok"] is True
    rows = {row["name"]: row for row in record["rows"]}
    assert rows["every user connected within 30 s"]["ok"]
    compared = {one["name"]: one for one in record["server_side"]}
    for name in ("fan-out lag", "reserve"):
        assert compared[name]["tester_ms"] is not None, compared
        assert compared[name]["server_ms"] is not None and compared[name]["observed"] > 0
    for invariant in (
        "sale opened and took holds",
        "sold <= stock",
        "orders = confirmed",
        "no buyer over the limit",
        "every hold accounted for",
        "expired holds returned to stock",
        "live reconcile",
    ):
        assert rows[invariant]["ok"], rows[invariant]
    figures = record["figures"]
    assert 0 < figures["sold"] <= figures["stock"] == 20
    assert figures["remaining"] + figures["sold"] == 20

    for name in ("report.html", "chart.png", "locust_stats.csv", "summary.json", "verdict.txt"):
        assert _non_empty(out / name), name
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["counts"]
    assert counts["first_connects"] == 250
    assert counts["frames"] > 250  # every viewer saw at least the sale start
    assert counts["events"] > 10  # the 10 probes (one viewer in 20) decoded theirs
    assert counts["viewer_seconds"] > 200
    assert counts.get("seq_regressions", 0) == 0
    assert counts["reserve_hold"] >= 20
    assert summary["fan_out"]["p99"] is not None
    assert summary["request_types"]["reserve"]["count"] >= counts["reserve_hold"]
    assert summary["users"] == {"Buyer": 50, "Host": 1}  # viewers are not locust users


def test_a_broken_threshold_fails_the_run(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = _run(
        out,
        *("--viewers", "10", "--buyers", "5", "--stock", "3", "--hold-seconds", "3"),
        *("--duration", "8s", "--spawn-rate", "50", "--max-p99-ms", "0.001"),
    )
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    assert "verdict: FAIL" in done.stdout
    record = json.loads((out / "verdict.json").read_text())
    failed = [row["name"] for row in record["rows"] if not row["ok"]]
    assert "threshold: reserve p99 ms" in failed, failed
    assert "threshold: fan-out lag p99 ms" in failed, failed
    assert _non_empty(out / "report.html")


CHAOS = ("redis-restart", "redis-rollback", "redis-flush", "pg-stall", "worker-kill")


def test_a_chaos_run_judges_every_fault(tmp_path: Path) -> None:
    """The five faults on their schedule against a service this command starts (its own Redis,
    two workers): the invariants hold, every fault has its row with its 503s and the time until
    the sale sold again, and the chart marks them. Sized so the sale sells all along: buyers
    buy up to 50 items each, slowly, out of a stock they cannot exhaust."""
    out = tmp_path / "report"
    done = _run(
        out,
        *("--chaos", ",".join(CHAOS), "--viewers", "50", "--buyers", "30"),
        *("--stock", "1000", "--limit", "50", "--think-min", "1", "--think-max", "3"),
        *("--confirm-share", "0.97", "--hold-seconds", "10", "--duration", "60s"),
        *("--spawn-rate", "60", "--workers", "1"),
    )
    assert "worker-kill needs 2 workers" in done.stdout
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "verdict: PASS" in done.stdout
    for name in CHAOS:
        assert f"chaos: {name} at " in done.stdout, name  # logged with its time

    record = json.loads((out / "verdict.json").read_text())
    rows = {row["name"]: row for row in record["rows"]}
    for index, name in enumerate(CHAOS, 1):
        assert rows[f"fault {index}: {name}"]["ok"], rows[f"fault {index}: {name}"]
    for row in ("no 5xx but 503", "acknowledged orders are the buyer's", "orders = confirmed"):
        assert rows[row]["ok"], rows[row]
    faults = record["faults"]
    assert [fault["name"] for fault in faults] == list(CHAOS)
    times = [fault["at_s"] for fault in faults]
    assert times == sorted(times) and times[0] > 0
    for fault in faults:
        assert isinstance(fault["unavailable"], int) and fault["unavailable"] >= 0
        assert fault["recovered_s"] is not None and fault["recovered_s"] >= 0, fault
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    calls = json.loads((out / "calls.json").read_text())
    assert {call[2] for call in calls} == {"reserve", "confirm"}


def test_help_explains_remote_workers() -> None:
    done = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--worker --master-host" in done.stdout
    assert "--max-p99-ms" in done.stdout
    assert "--chaos" in done.stdout and "worker-kill" in done.stdout
