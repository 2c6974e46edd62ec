"""`live loadtest flash-sale` end to end, as a user runs it: the command starts its own service
(embedded Redis and PostgreSQL), runs locust (a master and a worker) and judges the run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

# Looked up, never imported: importing locust monkey-patches this whole pytest process (gevent).
for _module in ("locust", "websocket"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (the `load` extra)", allow_module_level=True)

COMMAND = [sys.executable, "-m", "loadtest.cli", "loadtest", "flash-sale"]
RUN_TIMEOUT_S = 240


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


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

    record = json.loads((out / "verdict.json").read_text())
    assert record["ok"] is True
    rows = {row["name"]: row for row in record["rows"]}
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
    assert counts["connects"] >= 250
    assert counts["events"] > 250  # every viewer saw at least the sale start
    assert counts["reserve_hold"] >= 20
    assert summary["fan_out"]["p99"] is not None
    assert summary["request_types"]["reserve"]["count"] >= counts["reserve_hold"]
    assert summary["users"] == {"Viewer": 200, "Buyer": 50, "Host": 1}


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


def test_help_explains_remote_workers() -> None:
    done = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--worker --master-host" in done.stdout
    assert "--max-p99-ms" in done.stdout
