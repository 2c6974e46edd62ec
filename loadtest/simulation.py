"""One flash-sale simulation from start to verdict: the service (started here or given), the
scenario made through the API, locust headless, the settle, the invariants, the report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from loadtest import cpu, progress, scenario, tokens, verdict
from loadtest.api import Api
from loadtest.params import SUMMARY, TIMELINE, Params
from loadtest.service import EmbeddedService
from loadtest.swarm import Swarm, SwarmPlan

SETTLE_GRACE_S = 5.0


def _params(args: argparse.Namespace, made: scenario.Scenario, secret: str, out: Path) -> Params:
    users = args.viewers + args.buyers + 1
    sale_at = args.sale_at
    if sale_at is None:
        sale_at = min(users / args.spawn_rate + 2.0, args.duration / 2)
    return Params(
        room=made.room,
        sale=made.sale,
        product=made.product,
        jwt_secret=secret,
        stock=args.stock,
        limit=args.limit,
        hold_seconds=args.hold_seconds,
        confirm_share=args.confirm_share,
        think_min=args.think_min,
        think_max=args.think_max,
        sale_at=sale_at,
        host_every=args.host_every,
        comment_every=args.comment_every,
        buyers=args.buyers,
        max_p99_ms=args.max_p99_ms,
        max_error_rate=args.max_error_rate,
        out=str(out),
    )


def _settle(api: Api, sale: int, hold_seconds: int) -> dict[str, Any]:
    """The sale's figures once nothing is held or confirming (holds left at the end expire),
    or the last figures when that takes longer than the hold time allows."""
    deadline = time.monotonic() + hold_seconds + SETTLE_GRACE_S
    figures = scenario.figures(api, sale)
    while (figures["held"] or figures["confirming"]) and time.monotonic() < deadline:
        time.sleep(0.5)
        figures = scenario.figures(api, sale)
    return figures


def _service_pids(service: EmbeddedService) -> list[int]:
    """The service and its embedded servers (PostgreSQL daemonizes: found by its data dir)."""
    own = [service.pid] if service.pid else []
    return own + cpu.pids_mentioning(str(service.data_dir))


def _reconcile(sale: int, env: dict[str, str] | None) -> verdict.Reconciled:
    command = [sys.executable, "-m", "live.cli", "reconcile", str(sale)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return verdict.Reconciled(True, 1, "live reconcile did not finish in 120 s")
    return verdict.Reconciled(True, done.returncode, (done.stdout + done.stderr).strip())


def _load_summary(out: Path) -> dict[str, Any]:
    path = out / SUMMARY
    if not path.exists():
        return {}
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def simulate(args: argparse.Namespace, out: Path) -> int:
    with ExitStack() as stack:
        reconcile_env: dict[str, str] | None = None
        service: EmbeddedService | None = None
        if args.url:
            url, secret = args.url, tokens.resolve_secret(args.jwt_secret)
        else:
            print("starting live serve with its own Redis and PostgreSQL ...", flush=True)
            service = EmbeddedService(
                out / "service.log", workers=args.serve_workers, keep_data=args.keep_data
            )
            stack.enter_context(service)
            url, secret = service.url, service.secret
            reconcile_env = service.env()
        room = scenario.new_room_id()
        api = Api(url, tokens.host_token(secret, room))
        stack.callback(api.close)
        made = scenario.create(
            api,
            room,
            stock=args.stock,
            limit=args.limit,
            hold_seconds=args.hold_seconds,
            price_cents=Params().price_cents,
        )
        params = _params(args, made, secret, out)
        users = args.viewers + args.buyers + 1
        plan = SwarmPlan(
            url=url,
            params=params,
            users=users,
            spawn_rate=args.spawn_rate,
            duration_s=args.duration,
            out=out,
            workers=args.locust_workers,
            master_port=args.master_port,
            remote_workers=args.expect_remote,
        )
        swarm = Swarm(plan)
        print(
            f"{url}: room {made.room}, sale {made.sale} (stock {args.stock}, limit {args.limit},"
            f" hold {args.hold_seconds} s); {args.viewers} viewers + {args.buyers} buyers + 1 host"
            f" at {args.spawn_rate:g}/s for {args.duration} s, sale opens at "
            f"{params.sale_at:.1f} s; locust master + {args.locust_workers} workers"
            + (
                f" (+{args.expect_remote} remote on port {swarm.port})"
                if args.expect_remote
                else ""
            )
            + f"; report in {out}",
            flush=True,
        )
        groups: dict[str, Callable[[], list[int]]] = {"locust": swarm.pids}
        if service is not None:
            groups = {"service": lambda: _service_pids(service), **groups}
        meter = cpu.CpuMeter(groups)
        meter.sample()
        swarm.start()
        stack.callback(swarm.kill)
        samples = progress.watch(
            api,
            made.sale,
            out / TIMELINE,
            swarm.running,
            args.duration + 180.0,
            on_tick=meter.sample,
        )
        locust_code = swarm.finish()
        figures = _settle(api, made.sale, args.hold_seconds)
        samples.stock.append({"t": time.time(), **figures})
        summary = _load_summary(out)
        reconciled = (
            verdict.Reconciled(False, 0, "")
            if args.skip_reconcile
            else _reconcile(made.sale, reconcile_env)
        )
        cores = cpu.describe(meter.cores())
        return _report(args, out, made, figures, summary, reconciled, locust_code, samples, cores)
    raise AssertionError("unreachable")


def _report(
    args: argparse.Namespace,
    out: Path,
    made: scenario.Scenario,
    figures: dict[str, Any],
    summary: dict[str, Any],
    reconciled: verdict.Reconciled,
    locust_code: int,
    samples: progress.Samples,
    cores: str,
) -> int:
    from loadtest import chart

    series: list[dict[str, Any]] = summary.get("series", [])
    rows = verdict.load_checks(summary, args.viewers + args.buyers)
    rows += verdict.invariants(figures, summary, reconciled, args.buyers)
    if summary:
        rows += verdict.thresholds(summary, locust_code)
    else:
        rows.append(verdict.Row("locust run", False, "no summary.json: see locust-master.log"))
    title = (
        f"flash sale {made.sale} in room {made.room}: {args.viewers} viewers, {args.buyers} "
        f"buyers, stock {args.stock}, limit {args.limit}, {args.duration} s"
    )
    lines = verdict.figures_lines(summary, chart.peak(series))
    lines.append(f"  {'cpu (cores)':<12} {cores}")
    text = verdict.render(title, rows, lines)
    if reconciled.ran:
        text += "\n\nlive reconcile:\n" + reconciled.output
    print(text, flush=True)
    (out / "verdict.txt").write_text(text + "\n")
    ok = all(row.ok for row in rows)
    record = {"ok": ok, "rows": [row.view() for row in rows], "figures": figures}
    (out / "verdict.json").write_text(json.dumps(record, indent=2))
    try:
        sale_s = summary.get("sale_epoch_ms", 0) / 1000 or None
        chart.draw(out / "chart.png", series, samples.stock, sale_s, title)
    except ImportError:
        print("no chart.png: install matplotlib (pip install 'live[load]')", file=sys.stderr)
    print(f"\nreport: {out / 'report.html'}, chart: {out / 'chart.png'}", flush=True)
    return 0 if ok else 1
