"""`live loadtest group-deal` end to end, as a user runs it, at a small size: its own service,
buyers over HTTP and WebSockets starting, joining and leaving groups of 3 with a 4 s window,
and the verdict from PostgreSQL, the deal's figures and `live reconcile`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from loadtest_kit import run_loadtest

RUN_TIMEOUT_S = 180
INVARIANTS = (
    "groups started, joined and left",
    "no partial group ever ordered",
    "stock conserved",
    "no buyer over the limit",
    "every acknowledged join accounted for",
    "live reconcile",
)


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_loadtest("group-deal", out, *flags, timeout_s=RUN_TIMEOUT_S)


def test_a_group_deal_under_load_passes_its_verdict(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = _run(
        out,
        *("--buyers", "24", "--duration", "8", "--window", "4", "--group-size", "3"),
        *("--stock", "40", "--limit", "2", "--seed", "5"),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "verdict: PASS" in done.stdout
    record = json.loads((out / "verdict.json").read_text())
    rows = {row["name"]: row for row in record["rows"]}
    for name in INVARIANTS:
        assert rows[name]["ok"], rows[name]
    load = rows["groups started, joined and left"]["detail"]
    assert re.search(r" [1-9]\d* formed, [1-9]\d* failed$", load), load  # some fill, some fail
    deal = record["deal"]
    assert deal["state"] == "ended" and deal["held"] == 0
    assert 0 < deal["sold"] == deal["orders"] == 3 * deal["groups_formed"] <= 40
    assert deal["sold"] + deal["remaining"] == 40
    assert deal["revenue_cents"] == deal["sold"] * deal["group_price_cents"]
    calls = json.loads((out / "calls.json").read_text())
    assert {c["via"] for c in calls} == {"http", "ws"}
    assert {c["kind"] for c in calls} == {"start", "join", "leave"}
    assert all(c["answer"] != "no_answer" for c in calls)
    assert (out / "verdict.txt").read_text().rstrip().endswith("verdict: PASS")


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    done = _run(tmp_path / "report", "--group-size", "1")
    assert done.returncode == 2, done.stderr
    assert "--group-size must be between 2 and 100" in done.stderr
