"""Carries out a chaos plan (loadtest/chaos.py) in a thread beside the progress display: waits
for the sale to open, then injects each fault at its time through loadtest/faults.py and logs it
(a line on stdout, and the list the verdict reads)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest import chaos
from loadtest.api import Api, TransportError
from loadtest.faults import FaultError, RedisServer, SaleRowStall, cut_connections
from loadtest.processes import kill, worker_pids

POLL_S = 0.25
WORKER_BACK_S = 30.0  # how long to wait for uvicorn to replace a killed worker


@dataclass(frozen=True)
class Targets:
    """What the faults act on."""

    sale: int
    redis: RedisServer | None = None  # the service's Redis, when the load tester owns it
    service_pid: int | None = None  # `live serve`, when the load tester started it
    database_url: str = ""
    schema: str = "public"


@dataclass
class Injected:
    """One fault as it happened."""

    name: str
    planned_s: float  # after the sale opened
    at: float  # epoch seconds when the injection began
    effective: float = 0.0  # when the fault was in place (a stall: once the row is locked)
    took_s: float = 0.0  # how long the fault lasted (down, stalled, until a new worker)
    detail: str = ""
    error: str = ""  # the fault could not be injected

    def view(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChaosRunner:
    plan: list[chaos.Planned]
    targets: Targets
    sizing: chaos.Sizing
    api: Api  # host token: polls the sale until it opens
    give_up_s: float  # no sale opening by then: nothing is injected
    say: Callable[[str], None] = print
    injected: list[Injected] = field(default_factory=list)
    opened_at: float | None = None  # epoch seconds the sale was first seen open
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _stalls: list[SaleRowStall] = field(default_factory=list)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> list[Injected]:
        """End the schedule (a fault in progress finishes), release stalls; what was injected."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        for stall in self._stalls:
            stall.release()
            stall.join(10)
        self.api.close()
        return self.injected

    def _run(self) -> None:
        opened = self._await_opening()
        if opened is None:
            for planned in self.plan:
                self.injected.append(
                    Injected(planned.name, planned.at_s, time.time(), error="the sale never opened")
                )
            return
        snapshots: dict[int, Path] = {}
        steps = sorted(
            [(p.at_s, index, "fault") for index, p in enumerate(self.plan)]
            + [
                (p.snapshot_at_s, index, "snapshot")
                for index, p in enumerate(self.plan)
                if p.snapshot_at_s is not None
            ]
        )
        for at_s, index, step in steps:
            if self._stop.wait(max(0.0, opened + at_s - time.time())):
                return
            planned = self.plan[index]
            if step == "snapshot":
                with contextlib.suppress(FaultError, OSError):
                    snapshots[index] = self._redis().snapshot()
                continue
            self.injected.append(self._inject(planned, snapshots.get(index), opened))

    def _await_opening(self) -> float | None:
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline:
            with contextlib.suppress(TransportError):
                answer = self.api.get(f"/api/sales/{self.targets.sale}")
                if answer.ok and answer.body.get("state") not in (None, "scheduled"):
                    self.opened_at = time.time()
                    return self.opened_at
            if self._stop.wait(POLL_S):
                return None
        return None

    def _inject(self, planned: chaos.Planned, snapshot: Path | None, opened: float) -> Injected:
        done = Injected(planned.name, planned.at_s, time.time())
        done.effective = done.at
        started = time.monotonic()
        try:
            done.detail = self._act(planned.name, snapshot)
            if planned.name == chaos.PG_STALL:
                done.effective = time.time()
        except (FaultError, OSError, RuntimeError) as exc:
            done.error = f"{type(exc).__name__}: {exc}"
        if not done.took_s:
            done.took_s = round(time.monotonic() - started, 3)
        if planned.name == chaos.PG_STALL and not done.error:
            done.took_s = self.sizing.stall_s
        self.say(
            f"chaos: {planned.name} at {done.at - opened:.1f} s into the sale"
            f" (took {done.took_s:.1f} s): {done.error or done.detail}"
        )
        return done

    def _redis(self) -> RedisServer:
        if self.targets.redis is None:
            raise FaultError("no Redis of the load tester's own")
        return self.targets.redis

    def _act(self, name: str, snapshot: Path | None) -> str:
        targets, sizing = self.targets, self.sizing
        if name == chaos.REDIS_RESTART:
            self._redis().restart(kill=True, down_s=sizing.redis_down_s)
            return f"SIGKILL, {sizing.redis_down_s:g} s down, started again with its data"
        if name == chaos.REDIS_ROLLBACK:
            if snapshot is None:
                raise FaultError("no snapshot was taken before the rollback")
            self._redis().rollback(snapshot)
            return f"back to the snapshot of {sizing.rollback_back_s:g} s before"
        if name == chaos.REDIS_FLUSH:
            self._redis().flush()
            return "FLUSHALL"
        if name == chaos.PG_STALL:
            stall = SaleRowStall(targets.database_url, targets.schema, targets.sale, sizing.stall_s)
            stall.start()
            self._stalls.append(stall)
            return f"sale {targets.sale}'s row locked for {sizing.stall_s:g} s"
        if name == chaos.PG_CUT:
            name = f"live/{targets.schema}"
            cut = cut_connections(targets.database_url, name)
            if not cut:  # the service names its connections so; nothing cut is no fault
                raise FaultError(f"no PostgreSQL connection with application_name {name}")
            return f"{cut} PostgreSQL connections of {name} terminated"
        if name == chaos.WORKER_KILL:
            return self._kill_worker()
        raise FaultError(f"unknown fault {name}")

    def _kill_worker(self) -> str:
        if self.targets.service_pid is None:
            raise FaultError("no service process of the load tester's own")
        workers = worker_pids(self.targets.service_pid)
        if not workers:
            raise FaultError(f"no uvicorn worker under pid {self.targets.service_pid}")
        victim = workers[0]
        kill(victim)
        deadline = time.monotonic() + WORKER_BACK_S
        while time.monotonic() < deadline:
            now = worker_pids(self.targets.service_pid)
            if victim not in now and len(now) >= len(workers):
                return f"SIGKILL worker {victim} of {len(workers)}; uvicorn started {now[-1]}"
            if self._stop.wait(POLL_S):
                break
        return f"SIGKILL worker {victim} of {len(workers)}; not replaced in {WORKER_BACK_S:g} s"
