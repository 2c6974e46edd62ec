"""Join and reconnect storms, and memory per viewer: one room of a live server on one core, N
viewers from load-generator processes on the other cores, beside Node's socket.io where the
question makes sense (joins/s and memory, with the same clients).

    .venv/bin/python bench/storms.py [--viewers 10000] [--runs 3] [--only live|node]
                                     [--rate 50] [--concurrency 256] [--spread 20]

Each run starts a server (bench/fanout/servers.py: live on the machine's Redis and PostgreSQL
under a prefix and schema of its own, or Node socket.io), publishes the room workload
(bench/fanout/workload.py, --rate events/s) for the whole run so the room is live, and:
1. joins: N fresh viewers join as fast as the clients can (at most --concurrency handshakes in
   flight per generator): joins/s (N over the time to the last viewer's snapshot) and the
   server's CPU per join;
2. memory: RSS with the N viewers connected minus RSS before the first, over N;
3. resume storm (live): every viewer is dropped (RST) and reconnects at once with `since`/`epoch`
   (`since` the log's seq at the drop minus i % --spread: the viewers missed 0 to spread-1
   events): the time until every viewer's `welcome` said `resumed: true`, and the server's CPU.
The goals (issue 18) are printed beside the medians over --runs, with the spread (min-max).
The generators' CPU is printed too: near 100% of their cores, the clients were the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fanout.peers import install_peers, peer_versions
from fanout.procstats import proc_cpu_s, proc_cpu_split_s, proc_rss, raise_fd_limit, split_cpus
from fanout.servers import STARTERS, Server, add_store_options, stop_server
from fanout.storm_client import Opened, StormSpec, storm_worker
from fanout.workload import Workload, publish_loop

RESUME_GOAL_S = 3.0
JOINS_GOAL = 5000.0
KIB_GOAL = 16.0
LABELS = {"live": "live", "node": "node socket.io"}
RUN_LIMIT_S = 600.0  # the publisher's horizon: no run lasts longer


@dataclass
class Storm:
    """One run's figures for one server."""

    kind: str
    viewers: int
    joined: int = 0
    join_s: float = math.nan
    join_cpu: tuple[float, float] = (math.nan, math.nan)  # the server's (user, system) s
    join_p99_s: float = math.nan  # one viewer's connect-to-snapshot
    gen_cpu: float = math.nan  # the generators' cores over the join phase
    rss_idle: int = 0
    rss_connected: int = 0
    resumed: int = 0
    resume_snapshots: int = 0  # viewers that got a snapshot instead (should be none)
    resume_s: float = math.nan
    resume_cpu: tuple[float, float] = (math.nan, math.nan)
    resume_p99_s: float = math.nan
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def joins_per_s(self) -> float:
        return self.joined / self.join_s if self.join_s else math.nan

    @property
    def cpu_per_join_us(self) -> float:
        return 1e6 * sum(self.join_cpu) / self.joined if self.joined else math.nan

    @property
    def sys_share(self) -> float:
        """Of the server's CPU in the join phase, the kernel's share (TCP, accept, writes)."""
        return self.join_cpu[1] / sum(self.join_cpu) if sum(self.join_cpu) else math.nan

    @property
    def kib_per_viewer(self) -> float:
        return (self.rss_connected - self.rss_idle) / max(1, self.joined) / 1024

    @property
    def cpu_per_resume_us(self) -> float:
        return 1e6 * sum(self.resume_cpu) / self.resumed if self.resumed else math.nan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/storms.py", description=__doc__)
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=tuple(LABELS))
    parser.add_argument("--rate", type=float, default=2.0, help="room events per second")
    parser.add_argument("--pin-every", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=256, help="joins in flight/worker")
    parser.add_argument("--spread", type=int, default=20, help="distinct `since` values")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--tick-ms", type=int, default=0)
    parser.add_argument("--live-module", default="live.cli")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--no-pin", action="store_true")
    add_store_options(parser)
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "live-bench",
    )
    args = parser.parse_args(argv)
    if min(args.viewers, args.runs, args.concurrency, args.spread, args.workers) < 1:
        parser.error("--viewers, --runs, --concurrency, --spread and --workers must be positive")
    args.server_cpus, args.gen_cpus = split_cpus(args.no_pin)
    return args


async def _ask(workers: list[Pipe], commands: list[tuple[Any, ...]], timeout_s: float) -> list[Any]:
    """Send each worker its command at once; their answers, in order."""
    for pipe, command in zip(workers, commands, strict=True):
        pipe.send(command)
    answers = []
    for pipe in workers:
        if not await asyncio.to_thread(pipe.poll, timeout_s):
            raise TimeoutError(f"a load generator did not answer within {timeout_s:.0f} s")
        answers.append(pipe.recv()[1])
    return answers


def _split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


def _p99(opened: list[Opened]) -> float:
    latencies = sorted(x for o in opened for x in o.latencies)
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else math.nan


async def _phase(
    workers: list[Pipe], paths: list[str], concurrency: int, pid: int, timeout_s: float
) -> tuple[list[Opened], tuple[float, float]]:
    """Open `paths` over the workers; their reports and the server's CPU seconds meanwhile
    (user, system)."""
    user0, sys0 = proc_cpu_split_s(pid)
    commands = [("open", part, concurrency) for part in _split(paths, len(workers))]
    opened: list[Opened] = await _ask(workers, commands, timeout_s + 30)
    user1, sys1 = proc_cpu_split_s(pid)
    return opened, (user1 - user0, sys1 - sys0)


async def run_one(args: argparse.Namespace, kind: str, redis: aioredis.Redis, logs: Path) -> Storm:
    storm = Storm(kind, args.viewers)
    ctx = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = []
    pipes: list[Pipe] = []
    server: Server | None = None
    publishing: asyncio.Task[Any] | None = None
    try:
        server = await STARTERS[kind](args, redis, logs)
        pid = server.proc.pid
        spec = StormSpec(
            "live" if kind == "live" else "sio", server.port, args.gen_cpus, args.nice, args.timeout
        )
        for _ in range(args.workers):
            mine, theirs = ctx.Pipe()
            child = ctx.Process(target=storm_worker, args=(theirs, spec), daemon=True)
            child.start()
            theirs.close()
            processes.append(child)
            pipes.append(mine)
        await asyncio.sleep(0.5)
        storm.rss_idle = proc_rss(pid)
        start = time.time() + 0.1
        workload = Workload(args.rate, args.pin_every)
        publishing = asyncio.create_task(
            publish_loop(server.publish, workload, start, start, start + RUN_LIMIT_S)
        )
        await asyncio.sleep(1.0)
        gen0 = sum(proc_cpu_s(p.pid) for p in processes if p.pid)
        began = time.monotonic()
        opened, storm.join_cpu = await _phase(
            pipes, [server.path] * args.viewers, args.concurrency, pid, args.timeout
        )
        gen1 = sum(proc_cpu_s(p.pid) for p in processes if p.pid)
        storm.gen_cpu = (gen1 - gen0) / (time.monotonic() - began)
        storm.joined = sum(o.ready for o in opened)
        storm.join_s = max(o.seconds for o in opened)
        storm.join_p99_s = _p99(opened)
        for o in opened:
            for reason, n in o.errors.items():
                storm.errors[f"join: {reason}"] = storm.errors.get(f"join: {reason}", 0) + n
        await asyncio.sleep(1.0)
        storm.rss_connected = proc_rss(pid)
        if server.position is not None:
            async with asyncio.timeout(30):
                epoch, seq = await server.position()
            paths = [
                f"{server.path}?since={max(0, seq - i % args.spread)}&epoch={epoch}"
                for i in range(storm.joined)
            ]
            await _ask(pipes, [("drop",)] * len(pipes), 30)
            opened, storm.resume_cpu = await _phase(pipes, paths, len(paths), pid, args.timeout)
            storm.resumed = sum(o.resumed for o in opened)
            storm.resume_snapshots = sum(o.ready - o.resumed for o in opened)
            storm.resume_s = max(o.seconds for o in opened)
            storm.resume_p99_s = _p99(opened)
            for o in opened:
                for reason, n in o.errors.items():
                    key = f"resume: {reason}"
                    storm.errors[key] = storm.errors.get(key, 0) + n
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({server.proc.returncode})")
    except Exception as exc:
        storm.errors[f"{type(exc).__name__}: {exc}"[:120]] = 1
        if server is not None and server.log_tail():
            print(f"\n  server log:\n{server.log_tail()}")
    finally:
        if publishing is not None:
            publishing.cancel()
            with contextlib.suppress(BaseException):
                await publishing
        for pipe in pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("close",))
        for process in processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
        if server is not None:
            await stop_server(server)
    print(_row(storm), flush=True)
    return storm


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _row(s: Storm) -> str:
    row = (
        f"  {LABELS[s.kind]:<14} joined {s.joined}/{s.viewers} in {_fmt(s.join_s, '.2f')} s: "
        f"{_fmt(s.joins_per_s, ',.0f')} joins/s, {_fmt(s.cpu_per_join_us, ',.0f')} µs server CPU "
        f"per join ({_fmt(100 * s.sys_share, '.0f')}% in the kernel), "
        f"p99 {_fmt(s.join_p99_s * 1000, '.0f')} ms, generators "
        f"{_fmt(100 * s.gen_cpu, '.0f')}% CPU; {s.kib_per_viewer:.1f} KiB/viewer "
        f"(RSS {s.rss_idle / 2**20:.0f} -> {s.rss_connected / 2**20:.0f} MiB)"
    )
    if s.kind == "live":
        row += (
            f"; resumed {s.resumed} ({s.resume_snapshots} snapshots) in "
            f"{_fmt(s.resume_s, '.2f')} s, {_fmt(s.cpu_per_resume_us, ',.0f')} µs CPU each, "
            f"p99 {_fmt(s.resume_p99_s * 1000, '.0f')} ms"
        )
    if s.errors:
        row += f"; errors {s.errors}"
    return row


def _spread(values: list[float], spec: str) -> str:
    good = [v for v in values if not math.isnan(v)]
    if not good:
        return "-"
    median = format(statistics.median(good), spec)
    return f"{median} ({format(min(good), spec)}-{format(max(good), spec)})"


def report(args: argparse.Namespace, results: dict[str, list[Storm]]) -> None:
    print()
    print(
        f"{args.viewers} viewers, {args.runs} run(s), room workload {args.rate:g} events/s; "
        f"server pinned to CPU {','.join(map(str, args.server_cpus)) or 'any'}, {args.workers} "
        f"generators on CPU {','.join(map(str, args.gen_cpus)) or 'any'}; median (min-max):"
    )
    for kind, runs in results.items():
        print(
            f"  {LABELS[kind]:<14} joins/s {_spread([r.joins_per_s for r in runs], ',.0f')}, "
            f"µs CPU/join {_spread([r.cpu_per_join_us for r in runs], ',.0f')}, "
            f"KiB/viewer {_spread([r.kib_per_viewer for r in runs], '.1f')}"
            + (
                f", resume storm s {_spread([r.resume_s for r in runs], '.2f')}, "
                f"µs CPU/resume {_spread([r.cpu_per_resume_us for r in runs], ',.0f')}"
                if kind == "live"
                else ""
            )
        )
    live = results.get("live")
    if not live:
        return

    def median(values: list[float]) -> float:
        good = [v for v in values if not math.isnan(v)]
        return statistics.median(good) if good else math.nan

    joins = median([r.joins_per_s for r in live])
    kib = median([r.kib_per_viewer for r in live])
    resume = median([r.resume_s if r.resumed == r.viewers else math.inf for r in live])
    print("goals (issue 18):")
    print(
        f"  resume storm of {args.viewers} <= {RESUME_GOAL_S:g} s: {_fmt(resume, '.2f')} s, "
        f"{'met' if resume <= RESUME_GOAL_S else 'not met'}"
    )
    print(
        f"  fresh joins >= {JOINS_GOAL:,.0f}/s: {joins:,.0f}/s, "
        f"{'met' if joins >= JOINS_GOAL else 'not met'}"
    )
    print(f"  <= {KIB_GOAL:g} KiB per viewer: {kib:.1f}, {'met' if kib <= KIB_GOAL else 'not met'}")
    node = results.get("node")
    if node:
        node_joins = median([r.joins_per_s for r in node])
        node_kib = median([r.kib_per_viewer for r in node])
        print(
            f"  live / node socket.io: {joins / node_joins:.2f}x the joins/s, "
            f"{kib / node_kib:.2f}x the memory per viewer"
        )


async def bench(args: argparse.Namespace, kinds: list[str]) -> dict[str, list[Storm]]:
    redis = aioredis.Redis.from_url(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    logs = Path(tempfile.mkdtemp(prefix="live-storms-"))
    results: dict[str, list[Storm]] = {kind: [] for kind in kinds}
    try:
        await redis.ping()
        for run in range(args.runs):
            for kind in kinds:
                print(f"- run {run + 1}, {LABELS[kind]}, {args.viewers} viewers", flush=True)
                results[kind].append(await run_one(args, kind, redis, logs))
    finally:
        await redis.aclose()
        shutil.rmtree(logs, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    kinds = [args.only] if args.only else list(LABELS)
    install_peers([k for k in kinds if k != "live"], args.peers_dir)
    print(f"peers: {peer_versions(kinds, args.peers_dir) or 'none'}", flush=True)
    if args.gen_cpus:
        os.sched_setaffinity(0, args.gen_cpus)
    report(args, asyncio.run(bench(args, kinds)))


if __name__ == "__main__":
    main()
