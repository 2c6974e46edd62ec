"""One flash-sale simulation from start to verdict: the service (started here or given), the
scenario made through the API, locust headless (with --chaos: faults injected on a schedule
beside it), the settle, the invariants, the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from loadtest import chaos, cpu, progress, report, scenario, server_side, tokens, verdict
from loadtest.api import Api
from loadtest.faults import RedisServer
from loadtest.injector import ChaosRunner, Targets
from loadtest.params import SUMMARY, TIMELINE, Params, default_sale_at
from loadtest.report import Run
from loadtest.service import EmbeddedService
from loadtest.swarm import Swarm, SwarmPlan

SETTLE_GRACE_S = 5.0
# After faults, a confirm stuck between the stores is settled by the service's recovery sweep
# (10 s or more after it began): give it that time before judging.
CHAOS_SETTLE_S = 35.0


def sale_at(args: argparse.Namespace) -> float:
    if args.sale_at is not None:
        return float(args.sale_at)
    return default_sale_at(args.viewers + args.buyers + 1, args.spawn_rate, args.duration)


def sizing(args: argparse.Namespace) -> chaos.Sizing:
    """Fault sizes: the io timeout is the service's (LIVE_IO_TIMEOUT_S of this environment with
    --url; the default for a service started here, which gets no LIVE_* of ours)."""
    io_timeout = os.environ.get("LIVE_IO_TIMEOUT_S", "") if args.url else ""
    return chaos.Sizing(io_timeout_s=float(io_timeout or chaos.Sizing().io_timeout_s))


def chaos_plan(args: argparse.Namespace) -> list[chaos.Planned]:
    """The faults of --chaos on their schedule (empty without it); ChaosError when they cannot
    be reached or do not fit in the time the sale sells."""
    if not args.chaos:
        return []
    faults = chaos.parse(args.chaos)
    problem = chaos.unreachable(
        faults, own_service=not args.url, database=not args.url or bool(args.database_url)
    )
    if problem:
        raise chaos.ChaosError(problem)
    window = chaos.selling_s(args.duration, sale_at(args))
    try:
        return chaos.schedule(faults, window, sizing(args))
    except chaos.ChaosError:
        least = chaos.min_duration_s(faults, sale_at(args), sizing(args))
        raise chaos.ChaosError(
            f"the sale sells for about {window:.0f} s, too short for {', '.join(faults)}:"
            f" give --duration {least}s or more"
        ) from None


def connect_rates(args: argparse.Namespace) -> tuple[float, float]:
    """(viewers/s, buyers/s): --spawn-rate shared by the viewers and the buyers in proportion,
    so that both are connected at the same moment; locust spawns at least one buyer a second."""
    crowd = args.viewers + args.buyers
    return args.spawn_rate * args.viewers / crowd, max(args.spawn_rate * args.buyers / crowd, 1.0)


def _processes(args: argparse.Namespace) -> int:
    """The processes that run users: the workers, local and remote, or the one local runner."""
    return max(int(args.locust_workers) + int(args.expect_remote), 1)


def _params(args: argparse.Namespace, made: scenario.Scenario, secret: str, out: Path) -> Params:
    max_error_rate = args.max_error_rate
    if max_error_rate is None:  # a chaos run is judged on its invariants and faults instead
        max_error_rate = 1.0 if args.chaos else 0.01
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
        sale_at=sale_at(args),
        host_every=args.host_every,
        comment_every=args.comment_every,
        buyers=args.buyers,
        viewers=args.viewers,
        viewer_processes=_processes(args),
        viewer_rate=connect_rates(args)[0],
        probe_every=args.probe_every,
        max_p99_ms=args.max_p99_ms,
        max_error_rate=max_error_rate,
        out=str(out),
        chaos=args.chaos or "",
    )


def _settle(api: Api, sale: int, hold_seconds: float) -> dict[str, Any]:
    """The sale's figures once nothing is held or confirming (holds left at the end expire),
    or the last figures when that takes longer than the hold time allows."""
    deadline = time.monotonic() + hold_seconds + SETTLE_GRACE_S
    figures = scenario.figures(api, sale)
    while (figures["held"] or figures["confirming"]) and time.monotonic() < deadline:
        time.sleep(0.5)
        figures = scenario.figures(api, sale)
    return figures


def _service_pids(service: EmbeddedService, redis: RedisServer | None) -> list[int]:
    """The service and its servers (PostgreSQL daemonizes: found by its data dir)."""
    own = [pid for pid in (service.pid, redis.pid if redis else None) if pid]
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


def _own_redis(stack: ExitStack, keep_data: bool) -> RedisServer:
    """A Redis the service will use and the faults may kill, roll back and flush."""
    directory = Path(tempfile.mkdtemp(prefix="live-loadtest-redis-"))
    if not keep_data:
        stack.callback(shutil.rmtree, directory, True)
    server = RedisServer(directory / "data")
    stack.enter_context(server)
    return server


def _say(line: str) -> None:
    """A line of its own, also on a terminal where the progress line is rewritten in place."""
    tty = sys.stdout.isatty()
    sys.stdout.write(("\r" + line.ljust(120) if tty else line) + "\n")
    sys.stdout.flush()


def _start_chaos(
    args: argparse.Namespace,
    plan: list[chaos.Planned],
    targets: Targets,
    api_url: str,
    secret: str,
    room: str,
) -> ChaosRunner:
    api = Api(api_url, tokens.host_token(secret, room), timeout_s=5)
    runner = ChaosRunner(
        plan, targets, sizing(args), api, give_up_s=args.duration + 120.0, say=_say
    )
    print(
        "chaos: " + ", ".join(f"{p.name} at {p.at_s:.1f} s" for p in plan) + " into the sale",
        flush=True,
    )
    runner.start()
    return runner


def simulate(args: argparse.Namespace, out: Path) -> int:
    plan = chaos_plan(args)
    with ExitStack() as stack:
        reconcile_env: dict[str, str] | None = None
        service: EmbeddedService | None = None
        redis: RedisServer | None = None
        if args.url:
            url, secret = args.url, tokens.resolve_secret(args.jwt_secret)
        else:
            if any(p.name in chaos.REDIS_FAULTS for p in plan):
                redis = _own_redis(stack, args.keep_data)
            print(
                "starting live serve with its own "
                + (
                    "PostgreSQL and a Redis of the load tester's"
                    if redis
                    else "Redis and PostgreSQL"
                )
                + " ...",
                flush=True,
            )
            service = EmbeddedService(
                out / "service.log",
                workers=args.serve_workers,
                keep_data=args.keep_data,
                redis_url=redis.url if redis else "",
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
        swarm = Swarm(
            SwarmPlan(
                url=url,
                params=params,
                users=args.buyers + 1,
                spawn_rate=connect_rates(args)[1],
                duration_s=args.duration,
                out=out,
                workers=args.locust_workers,
                master_port=args.master_port,
                remote_workers=args.expect_remote,
            )
        )
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
            groups = {"service": lambda: _service_pids(service, redis), **groups}
        meter = cpu.CpuMeter(groups)
        metrics_before = server_side.scrape(url)
        meter.sample()
        started = time.time()
        swarm.start()
        stack.callback(swarm.kill)
        runner: ChaosRunner | None = None
        if plan:
            targets = Targets(
                sale=made.sale,
                redis=redis,
                service_pid=service.pid if service else None,
                database_url=service.database_url if service else args.database_url,
                schema="public" if service else args.database_schema,
            )
            runner = _start_chaos(args, plan, targets, url, secret, made.room)
            stack.callback(runner.stop)
        samples = progress.watch(
            api,
            made.sale,
            out / TIMELINE,
            swarm.running,
            args.duration + 180.0,
            on_tick=meter.sample,
        )
        locust_code = swarm.finish()
        ended = time.time()
        metrics_after = server_side.scrape(url)
        injected = [fault.view() for fault in runner.stop()] if runner else []
        run = Run(
            started,
            ended,
            injected,
            runner.opened_at if runner else None,
            metrics_before,
            metrics_after,
            meter.seconds("locust") if meter.available else None,
            meter.peak("locust"),
        )
        figures = _settle(api, made.sale, args.hold_seconds + (CHAOS_SETTLE_S if plan else 0))
        samples.stock.append({"t": time.time(), **figures})
        summary = _load_summary(out)
        reconciled = (
            verdict.Reconciled(False, 0, "")
            if args.skip_reconcile
            else _reconcile(made.sale, reconcile_env)
        )
        cores = cpu.describe(meter.cores())
        return report.write(
            args, out, made, figures, summary, reconciled, locust_code, samples, cores, run
        )
    raise AssertionError("unreachable")
