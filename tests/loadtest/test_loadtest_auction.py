"""`live loadtest auction` end to end, as a user runs it, at a small size: its own service,
bidders and snipers over WebSockets, a sniping burst in each last second, and the verdict from
the server's record of the auction and `live reconcile --auction`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from loadtest_kit import run_loadtest

RUN_TIMEOUT_S = 180


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_loadtest("auction", out, *flags, timeout_s=RUN_TIMEOUT_S)


def test_an_auction_with_a_sniping_burst_passes_its_verdict(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = _run(
        out,
        *("--bidders", "12", "--snipers", "8", "--duration", "4"),
        *("--snipe-window", "2", "--max-extensions", "2", "--seed", "7"),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "verdict: PASS" in done.stdout
    record = json.loads((out / "verdict.json").read_text())
    rows = {row["name"]: row for row in record["rows"]}
    for row in (
        "bids placed and answered",
        "winner is the highest valid bid",
        "no bid accepted after the deadline",
        "every extension applied and capped",
        "at most one order",
        "live reconcile",
    ):
        assert rows[row]["ok"], rows[row]
    auction = record["auction"]
    assert auction["state"] == "ended" and auction["extensions"] <= 2
    calls = json.loads((out / "calls.json").read_text())
    snipes = [c for c in calls if c["kind"] == "snipe"]
    assert len(snipes) >= 8  # every sniper fired in a last second at least once
    late = [c for c in calls if c["kind"] == "late"]
    assert len(late) == 8 and all(c["answer"] != "no_answer" for c in late)
    assert (out / "verdict.txt").read_text().rstrip().endswith("verdict: PASS")


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    done = _run(tmp_path / "report", "--snipers", "-1")
    assert done.returncode == 2, done.stderr
    assert "cannot be negative" in done.stderr
