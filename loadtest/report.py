"""The end of a simulation: the verdict table (load, invariants, faults, thresholds) printed and
written to verdict.txt / verdict.json, and the chart."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest import impact, progress, scenario, server_side, verdict
from loadtest.params import CALLS


@dataclass(frozen=True)
class Run:
    started: float  # epoch seconds: locust started
    ended: float  # locust finished
    injected: list[dict[str, Any]] = field(default_factory=list)  # Injected.view() of each fault
    sale_opened: float | None = None  # when the chaos runner saw the sale open
    metrics_before: str = ""  # the service's /metrics just before locust started ("": unread)
    metrics_after: str = ""  # and just after it finished
    locust_cpu_s: float | None = None  # CPU seconds of every locust process (None: unmeasured)
    locust_peak: float | None = None  # the busiest locust process's busiest 5 s, in cores


def _generator_line(summary: dict[str, Any], run: Run) -> str:
    """The load generator's cost: CPU seconds per viewer-second (buyers and host included in
    the CPU), and its busiest process."""
    viewer_s = float(summary.get("counts", {}).get("viewer_seconds", 0))
    per = (
        f"{run.locust_cpu_s / viewer_s * 1e6:.0f} µs CPU per viewer-second"
        f" ({run.locust_cpu_s:.1f} CPU s / {viewer_s:,.0f} viewer-s, buyers' and host's CPU in it)"
        if run.locust_cpu_s is not None and viewer_s
        else "not measured"
    )
    peak = "-" if run.locust_peak is None else f"{run.locust_peak:.0%}"
    return f"  {'generator':<12} {per}; busiest locust process {peak} of a core over 5 s"


def _calls(out: Path) -> list[impact.Call]:
    path = out / CALLS
    return impact.calls_from(json.loads(path.read_text())) if path.exists() else []


def _fault_lines(impacts: list[impact.Impact]) -> list[str]:
    if not impacts:
        return []
    lines = ["  faults (s after the start; 503s etc. until the next fault; recovery: first order)"]
    for found in impacts:
        lines.append(
            f"    {found.name:<15} at {found.at_s:6.1f} s  lasted {found.took_s:5.1f} s"
            f"  503 x{found.unavailable:<5} other 5xx x{found.server_errors:<3}"
            f" unanswered x{found.no_answer:<4} sold again after "
            + ("-" if found.recovered_s is None else f"{found.recovered_s:.1f} s")
        )
    return lines


def write(
    args: argparse.Namespace,
    out: Path,
    made: scenario.Scenario,
    figures: dict[str, Any],
    summary: dict[str, Any],
    reconciled: verdict.Reconciled,
    locust_code: int,
    samples: progress.Samples,
    cores: str,
    run: Run,
) -> int:
    """Print and write the verdict and the chart; the exit code (0 when every row holds)."""
    from loadtest import chart

    chaos = bool(args.chaos)
    series: list[dict[str, Any]] = summary.get("series", [])
    rows = verdict.load_checks(summary, args.viewers + args.buyers, args.connect_within)
    rows += verdict.invariants(figures, summary, reconciled, args.buyers, chaos=chaos)
    impacts = impact.impacts(run.injected, _calls(out), run.started, run.ended, run.sale_opened)
    rows += [found.row(index) for index, found in enumerate(impacts, 1)]
    if summary:
        rows += verdict.thresholds(summary, locust_code)
    else:
        rows.append(verdict.Row("locust run", False, "no summary.json: see locust-master.log"))
    title = (
        f"flash sale {made.sale} in room {made.room}: {args.viewers} viewers, {args.buyers} "
        f"buyers, stock {args.stock}, limit {args.limit}, {args.duration} s"
        + (f", chaos {args.chaos}" if chaos else "")
    )
    lines = verdict.figures_lines(summary, chart.peak(series))
    lines.append(f"  {'cpu (cores)':<12} {cores}")
    lines.append(_generator_line(summary, run))
    compared = server_side.sides(summary, run.metrics_before, run.metrics_after)
    lines += server_side.lines(compared)
    lines += _fault_lines(impacts)
    text = verdict.render(title, rows, lines)
    if reconciled.ran:
        text += "\n\nlive reconcile:\n" + reconciled.output
    print(text, flush=True)
    (out / "verdict.txt").write_text(text + "\n")
    ok = all(row.ok for row in rows)
    record = {
        "ok": ok,
        "rows": [row.view() for row in rows],
        "figures": figures,
        "faults": [found.view() for found in impacts],
        "server_side": [asdict(one) | {"ratio": one.ratio} for one in compared],
        "run": {"started": run.started, "ended": run.ended, "sale_opened": run.sale_opened},
    }
    (out / "verdict.json").write_text(json.dumps(record, indent=2))
    marks = [(run.started + found.at_s, found.name) for found in impacts]
    try:
        sale_s = summary.get("sale_epoch_ms", 0) / 1000 or None
        chart.draw(out / "chart.png", series, samples.stock, sale_s, title, marks)
    except ImportError:
        print("no chart.png: install matplotlib (pip install 'live[load]')", file=sys.stderr)
    print(f"\nreport: {out / 'report.html'}, chart: {out / 'chart.png'}", flush=True)
    return 0 if ok else 1
