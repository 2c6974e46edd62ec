"""One row of bench/bids_edge.py: bidders driven through a workload on one auction (`rising` or
`at once`), a warm-up then the measured window, with the bids, answers, latencies and everyone's
CPU share over it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from bids_edge_clients import Answer, Bidder, WsBidder
from fanout.procstats import machine_cpu_s, proc_cpu_s, redis_cpu_s, self_cpu_s

START_CENTS = 100
WARM_UP_S = 0.5
WORKLOADS = ("rising", "at once")


@dataclass
class Row:
    what: str
    workload: str
    bids: int = 0
    accepted: int = 0
    seconds: float = 0.0
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # share of a core over the window
    frames: int = 0  # room frames the WebSocket bidders received in the window
    cap: float = math.inf  # bids/s the client's pacing allows

    @property
    def rate(self) -> float:
        return self.bids / self.seconds if self.seconds else 0.0

    def take(self, answer: Answer, latency: float) -> None:
        """An answer of the server's counts as a bid; a failed call (no answer) does not."""
        self.codes[answer.code] += 1
        if answer.code.startswith("error:"):
            return
        self.bids += 1
        self.accepted += answer.accepted
        self.latencies.append(latency)

    def ms(self, q: int) -> float:
        if len(self.latencies) < 2:
            return math.nan
        return statistics.quantiles(self.latencies, n=100)[q - 1] * 1000


@dataclass
class Race:
    """One auction's bidding: the next amount of the rising counter, the round's minimum."""

    auction: int
    amounts: itertools.count[int] = field(default_factory=lambda: itertools.count(START_CENTS))
    minimum: int = START_CENTS


async def timed(row: Row, bidder: Bidder, race: Race, amount: int | None = None) -> Answer:
    """One bid of `amount`, or of the rising counter's next amount (taken once paced)."""
    await bidder.pace()
    if amount is None:
        amount = next(race.amounts)
    started = time.perf_counter()
    try:
        answer = await bidder.bid(race.auction, amount)
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        answer = Answer(False, f"error:{type(exc).__name__}", None)
    row.take(answer, time.perf_counter() - started)
    return answer


async def drive(row: Row, bidders: Sequence[Bidder], race: Race, seconds: float) -> Row:
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    if row.workload == "rising":

        async def one(bidder: Bidder) -> None:
            while time.perf_counter() < deadline:
                if (await timed(row, bidder, race)).code.startswith("error:"):
                    return  # its connection is gone

        await asyncio.gather(*(one(b) for b in bidders))
    else:
        while time.perf_counter() < deadline:
            asked = race.minimum
            answers = await asyncio.gather(*(timed(row, b, race, asked) for b in bidders))
            race.minimum = max([asked + 1, *(a.min_next for a in answers if a.min_next)])
    row.seconds = time.perf_counter() - started
    return row


def pg_cpu_s() -> dict[int, float]:
    """CPU seconds of each of this machine's PostgreSQL processes."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(entry.path, "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = proc_cpu_s(int(entry.name))
    return found


async def measure(
    row: Row,
    bidders: Sequence[Bidder],
    race: Race,
    seconds: float,
    redis: aioredis.Redis,
    server_pid: int | None,
) -> Row:
    """A warm-up, then the measured window with everyone's CPU read around it."""
    await drive(Row(row.what, row.workload), bidders, race, WARM_UP_S)

    async def cpu() -> dict[str, float]:
        return {
            "live": proc_cpu_s(server_pid) if server_pid else math.nan,
            "redis": await redis_cpu_s(redis),
            "us": self_cpu_s(),
            "machine": machine_cpu_s()[0],
        }

    frames0 = sum(b.frames for b in bidders if isinstance(b, WsBidder))
    pg0, before = pg_cpu_s(), await cpu()
    await drive(row, bidders, race, seconds)
    after, pg1 = await cpu(), pg_cpu_s()
    row.cpu = {k: (after[k] - before[k]) / row.seconds for k in before}
    # (a backend that exited meanwhile is not counted: this is a floor)
    row.cpu["pg"] = sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items()) / row.seconds
    ours = ("live", "redis", "pg", "us")
    row.cpu["other"] = row.cpu["machine"] - sum(
        row.cpu[k] for k in ours if not math.isnan(row.cpu[k])
    )
    row.frames = sum(b.frames for b in bidders if isinstance(b, WsBidder)) - frames0
    return row
