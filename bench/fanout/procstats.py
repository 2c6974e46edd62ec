"""What a process costs, read from /proc and getrusage (CPU seconds, resident memory, the machine's
busy and interrupt time), and how the bench's processes get their priority and file limits."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import resource
from collections.abc import Coroutine
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def prioritize(nice: int) -> None:
    """Raise the CPU priority of this process, the leader of a session of its own (negative
    values need root). Linux's autogroup shares the CPU between sessions before it looks at a
    process's nice, so the session's nice is set too."""
    if not nice:
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(nice))
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def run_generator(cpus: tuple[int, ...], nice: int, main: Coroutine[Any, Any, None]) -> None:
    """Run a load-generator process's `main`: on `cpus` (none: anywhere), in a session of its
    own at `nice`, with as many open files as allowed, on uvloop where it is installed."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        with contextlib.suppress(OSError):
            os.setsid()
        prioritize(nice)
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def split_cpus(no_pin: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the server's CPUs, the load generators' CPUs): the first CPU this process may use and
    the others; neither pinned (both empty) with `no_pin` or a single CPU."""
    available = sorted(os.sched_getaffinity(0))
    if no_pin or len(available) < 2:
        return (), ()
    return (available[0],), tuple(available[1:])


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit(needed: int | None = None) -> None:
    """Raise this process's open-file limit to `needed`, or as far as the hard limit allows;
    never lower it. Thousands of sockets in one process (the bench, the fan-out test) need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if needed is None else needed
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft != resource.RLIM_INFINITY and (target == resource.RLIM_INFINITY or soft < target):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# -- /proc ----------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    return sum(proc_cpu_split_s(pid))


def proc_cpu_split_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_cpu_s() -> tuple[float, float]:
    """(busy, of which interrupts) CPU seconds of the whole machine since boot; loopback TCP is
    mostly processed in softirq time, which no process is charged with."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK, (values[5] + values[6]) / CLK_TCK


def workers_cpu_s(workers: list[tuple[multiprocessing.process.BaseProcess, Pipe]]) -> float:
    total = 0.0
    for process, _ in workers:
        if process.pid is not None:
            with contextlib.suppress(OSError):
                total += proc_cpu_s(process.pid)
    return total


async def redis_cpu_s(redis: aioredis.Redis) -> float:
    """Redis's CPU seconds, or NaN when it does not say (another server, no INFO access)."""
    try:
        info = await redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    except (RedisError, OSError, KeyError, ValueError):
        return math.nan
