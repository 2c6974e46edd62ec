"""One run (a server, N viewers, the workload for a window, what everyone measured) and the plan of
runs: counts in ascending order, the search below a failure, the time budget."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from loadtest.tally import percentile as histogram_percentile

from .client import WorkerSpec, viewer_worker
from .procstats import machine_cpu_s, proc_cpu_s, proc_rss, redis_cpu_s, self_cpu_s, workers_cpu_s
from .servers import STARTERS, Server, stop_server
from .workload import Published, Workload, publish_loop

LABELS = {
    "live": "live",
    "live-haproxy": "live 2x+haproxy",
    "node": "node socket.io",
    "socketio": "python-socketio",
}
P99_GOAL_MS = 250.0
WARM_UP_S = 2.0
DRAIN_S = 3.0
MIN_VIEWERS = 10


@dataclass
class Result:
    kind: str
    viewers: int
    connected: int = 0
    ramp_s: float = 0.0
    ramp_cpu: float = math.nan  # server cores while the viewers connected
    published: Published = field(default_factory=Published)
    window_s: float = 0.0
    frames: int = 0
    events: int = 0
    bytes: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    lag_max: float = math.nan
    pins: int = 0
    probes: int = 0
    lost: int = 0
    server_cpu: float = math.nan  # cores
    gen_cpu: float = math.nan  # cores, the load-generator processes and the publisher
    gen_cores: int = 1
    machine_cpu: float = math.nan  # cores busy on the whole machine
    irq_cpu: float = math.nan  # of which (soft) interrupts: mostly the loopback network
    redis_cpu: float = math.nan
    proxy_cpu: float = math.nan  # cores, HAProxy (live-haproxy only)
    rss_idle: int = 0
    rss_connected: int = 0
    rss_load: int = 0
    error: str = ""
    skipped: bool = False

    def percentile(self, q: float) -> float:
        """The q-quantile of the probes' lag in ms (NaN without any); buckets are 0.1 ms."""
        tenths = histogram_percentile(self.hist, q)
        return math.nan if tenths is None else tenths / 10

    @property
    def pins_expected(self) -> int:
        return self.published.pins_in_window * self.probes

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and not self.skipped
            and self.connected == self.viewers
            and self.lost == 0
            and self.pins >= self.pins_expected
            and self.percentile(0.99) < P99_GOAL_MS
        )

    @property
    def other_cpu(self) -> float:
        """Cores busy with what this bench did not start (other work on the machine)."""
        redis = 0.0 if math.isnan(self.redis_cpu) else self.redis_cpu
        proxy = 0.0 if math.isnan(self.proxy_cpu) else self.proxy_cpu
        ours = self.server_cpu + self.gen_cpu + redis + self.irq_cpu + proxy
        return max(0.0, self.machine_cpu - ours)

    @property
    def gen_bound(self) -> bool:
        return self.gen_cpu >= 0.9 * self.gen_cores

    def per_s(self, count: int) -> float:
        return count / self.window_s if self.window_s else math.nan

    @property
    def bytes_per_viewer_s(self) -> float:
        """Payload bytes each viewer received a second in the window (WebSocket frame headers,
        2-10 bytes a frame, not counted)."""
        return self.per_s(self.bytes) / self.connected if self.connected else math.nan

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_load - self.rss_idle) / max(1, self.viewers) / 1024

    def why_not(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return self.error
        reasons = []
        if self.connected < self.viewers:
            reasons.append(f"{self.viewers - self.connected} not connected")
        if self.lost:
            reasons.append(f"{self.lost} dropped")
        if self.pins < self.pins_expected:
            reasons.append(f"pins {self.pins}/{self.pins_expected}")
        if not self.percentile(0.99) < P99_GOAL_MS:
            reasons.append("p99")
        return ", ".join(reasons)


async def run_one(
    args: argparse.Namespace, kind: str, viewers: int, redis: aioredis.Redis, logs: Path
) -> Result:
    result = Result(kind, viewers, gen_cores=len(args.gen_cpus) or os.cpu_count() or 1)
    print(f"- {LABELS[kind]}, {viewers} viewers ...", end="", flush=True)
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Pipe]] = []
    server: Server | None = None
    try:
        server = await STARTERS[kind](args, redis, logs)
        pids = server.pids
        proxy = server.proxy.pid if server.proxy is not None else None
        await asyncio.sleep(0.5)
        result.rss_idle = sum(map(proc_rss, pids))
        probe_every = max(1, math.ceil(viewers / args.probes))
        per_worker = [
            viewers // args.workers + (i < viewers % args.workers) for i in range(args.workers)
        ]
        first = 0
        for index, count in enumerate(per_worker):
            if not count:
                continue
            spec = WorkerSpec(
                index=index,
                kind="live" if kind.startswith("live") else "sio",
                port=server.port,
                path=server.path,
                count=count,
                first=first,
                probe_every=probe_every,
                cpus=args.gen_cpus,
                connect_timeout_s=args.connect_timeout,
                concurrency=args.concurrency,
                nice=args.nice,
            )
            first += count
            mine, theirs = ctx.Pipe()
            child = ctx.Process(target=viewer_worker, args=(theirs, spec), daemon=True)
            child.start()
            theirs.close()
            workers.append((child, mine))
        errors: dict[str, int] = {}
        ramp_began, ramp_cpu0 = time.monotonic(), sum(map(proc_cpu_s, pids))
        for _, pipe in workers:
            reply = await _recv(pipe, args.connect_timeout + 30)
            result.connected += reply[1]
            result.ramp_s = max(result.ramp_s, reply[2])
            for reason, count in reply[3].items():
                errors[reason] = errors.get(reason, 0) + count
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({server.proc.returncode})")
        result.rss_connected = sum(map(proc_rss, pids))
        result.ramp_cpu = (sum(map(proc_cpu_s, pids)) - ramp_cpu0) / (time.monotonic() - ramp_began)
        await asyncio.sleep(1.0)
        start = time.time() + 0.3
        t0 = start + WARM_UP_S
        t1 = t0 + args.duration
        t_end = t1 + DRAIN_S
        for _, pipe in workers:
            pipe.send(("measure", t0, t1, t_end))
        workload = Workload(args.rate, args.pin_every)
        publishing = asyncio.create_task(publish_loop(server.publish, workload, start, t0, t1))

        async def cpu_now() -> tuple[float, float, tuple[float, float], float, float]:
            """CPU seconds so far: servers, generators and this process, machine, Redis, the
            proxy."""
            server = sum(map(proc_cpu_s, pids))
            generators = workers_cpu_s(workers) + self_cpu_s()
            proxied = proc_cpu_s(proxy) if proxy is not None else math.nan
            return server, generators, machine_cpu_s(), await redis_cpu_s(redis), proxied

        await asyncio.sleep(max(0.0, t0 - time.time()))
        cpu0 = await cpu_now()
        await asyncio.sleep(max(0.0, t1 - time.time()))
        cpu1 = await cpu_now()
        result.rss_load = sum(map(proc_rss, pids))
        result.window_s = t1 - t0
        result.server_cpu = (cpu1[0] - cpu0[0]) / result.window_s
        result.gen_cpu = (cpu1[1] - cpu0[1]) / result.window_s
        result.machine_cpu = (cpu1[2][0] - cpu0[2][0]) / result.window_s
        result.irq_cpu = (cpu1[2][1] - cpu0[2][1]) / result.window_s
        result.redis_cpu = (cpu1[3] - cpu0[3]) / result.window_s
        result.proxy_cpu = (cpu1[4] - cpu0[4]) / result.window_s
        result.published = await asyncio.wait_for(publishing, DRAIN_S + 30)
        for _, pipe in workers:
            _, stats = await _recv(pipe, DRAIN_S + 60)
            result.frames += stats["frames"]
            result.events += stats["events"]
            result.bytes += stats["bytes"]
            result.pins += stats["pins"]
            result.probes += stats["probes"]
            result.lost += stats["lost"]
            result.lag_max = max(
                stats["lag_max"], 0 if math.isnan(result.lag_max) else result.lag_max
            )
            for bucket, count in stats["hist"].items():
                result.hist[bucket] = result.hist.get(bucket, 0) + count
        if result.connected < viewers and errors:
            worst = max(errors, key=lambda reason: errors[reason])
            result.error = f"{viewers - result.connected} not connected ({worst})"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
        if server is not None and server.log_tail():
            print(f"\n  server log:\n{server.log_tail()}", end="")
    finally:
        for _, pipe in workers:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("close",))
        for process, pipe in workers:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
            pipe.close()
        if server is not None:
            await stop_server(server)
    verdict = "pass" if result.ok else f"FAIL ({result.why_not()})"
    print(
        f" connected {result.connected} in {result.ramp_s:.1f} s, "
        f"p99 {result.percentile(0.99):.1f} ms, server CPU {result.server_cpu:.0%}: {verdict}",
        flush=True,
    )
    return result


async def _recv(pipe: Pipe, timeout_s: float) -> Any:
    ready = await asyncio.to_thread(pipe.poll, timeout_s)
    if not ready:
        raise TimeoutError(f"a load generator did not answer within {timeout_s:.0f} s")
    return pipe.recv()


async def bench(args: argparse.Namespace, kinds: list[str]) -> dict[str, list[Result]]:
    redis = aioredis.Redis.from_url(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    started = time.monotonic()
    results: dict[str, list[Result]] = {kind: [] for kind in kinds}
    logs = args.logs or Path(tempfile.mkdtemp(prefix="live-fanout-"))
    logs.mkdir(parents=True, exist_ok=True)
    try:
        await redis.ping()
        for kind in kinds:
            failed_at = 0
            for viewers in args.viewers:
                skip = failed_at and kind != "live" and not args.no_skip
                if skip or time.monotonic() - started > args.budget:
                    results[kind].append(Result(kind, viewers, skipped=True))
                    continue
                result = await run_one(args, kind, viewers, redis, logs)
                results[kind].append(result)
                if not result.ok and not failed_at:
                    failed_at = viewers
            await _search(args, kind, results[kind], failed_at, started, redis, logs)
    finally:
        await redis.aclose()
        if args.logs is None:
            shutil.rmtree(logs, ignore_errors=True)
    return results


async def _search(
    args: argparse.Namespace,
    kind: str,
    results: list[Result],
    failed_at: int,
    started: float,
    redis: aioredis.Redis,
    logs: Path,
) -> None:
    """Narrow down the largest passing count below the first failure (bounded runs)."""
    if not failed_at:
        return
    low = max((r.viewers for r in results if r.ok and r.viewers < failed_at), default=0)
    high = failed_at
    for _ in range(args.search):
        if time.monotonic() - started > args.budget:
            break
        failed = next(r for r in results if r.viewers == high)
        # a live viewer gets one frame per tick (50 ms by default), a peer's one per event
        per_viewer = 1000 / (args.tick_ms or 50) if kind == "live" else args.rate
        guess = _estimate(failed, results, per_viewer)
        if low == 0:
            candidate = min(high // 2, guess) if guess else high // 2
        else:
            candidate = guess if low < guess < high else round(math.sqrt(low * high))
        candidate = _round(max(candidate, MIN_VIEWERS))
        if not low < candidate < high:  # the estimate rounded onto a count already tried
            candidate = _round(round(math.sqrt(max(low, MIN_VIEWERS) * high)))
        if not low < candidate < high or high / max(low, 1) < 1.25:
            break
        result = await run_one(args, kind, candidate, redis, logs)
        results.append(result)
        if result.ok:
            low = candidate
        else:
            high = candidate


def _estimate(failed: Result, results: list[Result], per_viewer: float) -> int:
    """Viewers a server that failed could serve: 80% of the frames it did deliver per second,
    over the frames a viewer gets per second when the server keeps up (as measured in a passing
    run; else `per_viewer`)."""
    if not failed.window_s or not failed.frames:
        return 0
    passing = [r for r in results if r.ok and r.frames]
    if passing:
        per_viewer = passing[0].per_s(passing[0].frames) / passing[0].viewers
    return int(0.8 * failed.per_s(failed.frames) / per_viewer)


def _round(n: int) -> int:
    """Two significant digits, so the counts read well."""
    if n < 100:
        return n
    scale = int(10 ** (len(str(n)) - 2))
    return n // scale * scale
