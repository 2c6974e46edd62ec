"""Faults injected during a flash-sale simulation (`--chaos`): which exist, which a run can
reach, and when each one happens. Pure: loadtest/injector.py carries the plan out.

- redis-restart: the service's Redis is SIGKILLed, stays down 2 s and starts again with its
  data (AOF everysec: the last second of writes may be lost). Needs its own Redis.
- redis-rollback: Redis goes back to a snapshot taken 3 s earlier (a failover to a lagging
  replica). Needs its own Redis.
- redis-flush: FLUSHALL, Redis forgets everything. Needs its own Redis.
- pg-stall: the sale's row is locked (SELECT ... FOR UPDATE) for twice the service's io timeout,
  so confirms time out (503). Needs the database.
- pg-cut: every PostgreSQL connection of the service is terminated. Needs the database.
- worker-kill: one uvicorn worker of `live serve` is SIGKILLed (uvicorn starts another). Needs
  its own service with 2 or more workers.

"its own Redis" and "its own service": the load tester must start the service (no --url), and it
then gives it a Redis of its own to kill, roll back and flush. "the database": the service
started here (its embedded PostgreSQL), or --database-url (and --database-schema) with --url.

The faults are spread over the time the sale sells: from a couple of seconds after it opens to
the moment buyers stop starting anything, each in a slot long enough for the fault itself and
for the sale to sell again before the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.params import buy_margin_s

REDIS_RESTART = "redis-restart"
REDIS_ROLLBACK = "redis-rollback"
REDIS_FLUSH = "redis-flush"
PG_STALL = "pg-stall"
PG_CUT = "pg-cut"
WORKER_KILL = "worker-kill"
FAULTS = (REDIS_RESTART, REDIS_ROLLBACK, REDIS_FLUSH, PG_STALL, PG_CUT, WORKER_KILL)
REDIS_FAULTS = frozenset({REDIS_RESTART, REDIS_ROLLBACK, REDIS_FLUSH})
DATABASE_FAULTS = frozenset({PG_STALL, PG_CUT})
OWN_SERVICE_FAULTS = REDIS_FAULTS | {WORKER_KILL}


class ChaosError(ValueError):
    """A --chaos that cannot be run as asked; the message says why, in one line."""


def parse(text: str) -> tuple[str, ...]:
    """`redis-restart,pg-stall` (in that order; a fault named twice happens twice) or `all`."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if names == ("all",):
        return FAULTS
    unknown = [name for name in names if name not in FAULTS]
    if unknown or not names:
        raise ChaosError(
            f"unknown fault {', '.join(unknown) or '(none given)'}: --chaos takes"
            f" {','.join(FAULTS)} or all"
        )
    return names


def unreachable(faults: tuple[str, ...], *, own_service: bool, database: bool) -> str | None:
    """Why some of `faults` cannot be injected in this run, or None."""
    if not own_service:
        missing = [name for name in faults if name in OWN_SERVICE_FAULTS]
        if missing:
            return (
                f"{', '.join(missing)} need the service started by the load tester (no --url):"
                " it must own the Redis and the worker processes"
            )
    if not database:
        missing = [name for name in faults if name in DATABASE_FAULTS]
        if missing:
            return f"{', '.join(missing)} need --database-url with --url"
    return None


@dataclass(frozen=True)
class Sizing:
    """Fault parameters, sized for a 2-core machine that runs the service and locust."""

    io_timeout_s: float = 5.0  # the service's LIVE_IO_TIMEOUT_S
    redis_down_s: float = 2.0  # how long a restarted Redis stays down
    rollback_back_s: float = 3.0  # how far back a rollback goes
    recover_s: float = 5.0  # after a fault is over, before the next one starts
    lead_s: float = 2.0  # after the sale opens, before the first fault

    @property
    def stall_s(self) -> float:
        """Twice the io timeout: a confirm waiting for the row times out (503) at least once."""
        return 2 * self.io_timeout_s

    def before(self, name: str) -> float:
        """Time the fault needs before it happens (a rollback's snapshot)."""
        return self.rollback_back_s if name == REDIS_ROLLBACK else 0.0

    def lasts(self, name: str) -> float:
        """About how long the fault itself lasts (a worker-kill: until uvicorn replaced it)."""
        return {
            REDIS_RESTART: self.redis_down_s + 1.0,
            REDIS_ROLLBACK: 1.5,
            PG_STALL: self.stall_s,
            WORKER_KILL: 3.0,
        }.get(name, 0.5)

    def need(self, name: str) -> float:
        return self.before(name) + self.lasts(name) + self.recover_s


@dataclass(frozen=True)
class Planned:
    name: str
    at_s: float  # after the sale opens
    snapshot_at_s: float | None = None  # redis-rollback: when its snapshot is taken


def selling_s(duration_s: float, sale_at_s: float) -> float:
    """How long the sale sells: from its opening to the moment buyers stop starting anything."""
    return duration_s - sale_at_s - buy_margin_s(duration_s)


def min_duration_s(faults: tuple[str, ...], sale_at_s: float, sizing: Sizing) -> int:
    """The shortest --duration whose selling time has room for `faults`."""
    needed = sizing.lead_s + sum(sizing.need(name) for name in faults)
    return math.ceil(sale_at_s + needed + 5.0)


def schedule(faults: tuple[str, ...], window_s: float, sizing: Sizing) -> list[Planned]:
    """Spread `faults` over a selling time of `window_s`: each gets a slot of its `need` plus an
    equal share of the spare time, and happens early in it (after a half share), so the sale has
    the rest of the slot to sell again."""
    needed = sizing.lead_s + sum(sizing.need(name) for name in faults)
    if needed > window_s:
        raise ChaosError(
            f"the sale sells for about {window_s:.0f} s but {', '.join(faults)} need"
            f" {needed:.0f} s: give a longer --duration"
        )
    spare = (window_s - needed) / len(faults) if faults else 0.0
    planned: list[Planned] = []
    slot = sizing.lead_s
    for name in faults:
        at = slot + spare / 2 + sizing.before(name)
        snapshot = at - sizing.rollback_back_s if name == REDIS_ROLLBACK else None
        planned.append(
            Planned(name, round(at, 3), None if snapshot is None else round(snapshot, 3))
        )
        slot += sizing.need(name) + spare
    return planned
