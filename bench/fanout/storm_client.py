"""The storm's viewers: a load-generator process that opens its share of viewers at once (or with
a bound on handshakes in flight), drops them all, and opens them again with `since`/`epoch`,
timing each viewer from its connect to its snapshot or its resumed `welcome`. The viewers are
client.py's, which count nothing outside a measured window."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from .client import RESUMED, Tally, Viewer, upgrade_request
from .procstats import run_generator, self_cpu_s


@dataclass(frozen=True)
class StormSpec:
    kind: str  # "live" or "sio"
    port: int
    cpus: tuple[int, ...]
    nice: int
    timeout_s: float  # for one `open` command, all its viewers together


@dataclass
class Opened:
    """What one `open` command did: viewers ready (by a resume or a snapshot), the seconds
    from the command to the last one ready, each viewer's connect-to-ready time, failures."""

    ready: int = 0
    resumed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # this process's CPU over the command


def storm_worker(pipe: Pipe, spec: StormSpec) -> None:
    """Commands from the pipe: ("open", paths, concurrency) -> ("opened", Opened); ("drop",) ->
    ("dropped", n); ("close",) ends the process."""
    run_generator(spec.cpus, spec.nice, _serve(pipe, spec))


async def _serve(pipe: Pipe, spec: StormSpec) -> None:
    viewers: list[Viewer] = []
    tally = Tally()  # its window never opens: nothing is counted
    tally.closing = True  # a drop is ours, not a loss
    try:
        for _ in range(100):  # bounded: a run sends a handful of commands
            command = await asyncio.to_thread(pipe.recv)
            if command[0] == "open":
                opened = await _open(spec, tally, viewers, command[1], command[2])
                pipe.send(("opened", opened))
            elif command[0] == "drop":
                for viewer in viewers:
                    if viewer.transport is not None:
                        viewer.transport.abort()
                pipe.send(("dropped", len(viewers)))
                viewers.clear()
            else:
                return
    finally:
        for viewer in viewers:
            if viewer.transport is not None:
                viewer.transport.abort()  # RST: no TIME_WAIT pile-up between runs
        await asyncio.sleep(0.2)


async def _open(
    spec: StormSpec, tally: Tally, viewers: list[Viewer], paths: list[str], concurrency: int
) -> Opened:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    opened = Opened()
    began, cpu0 = time.monotonic(), self_cpu_s()
    deadline = began + spec.timeout_s

    async def open_one(path: str) -> None:
        request = upgrade_request(spec.port, path)
        async with gate:
            viewer = Viewer(tally, request, False, spec.kind == "sio")
            started = time.monotonic()
            try:
                async with asyncio.timeout(max(0.1, deadline - started)):
                    await loop.create_connection(lambda: viewer, "127.0.0.1", spec.port)
                    how: Any = await viewer.ready
            except (OSError, TimeoutError) as exc:
                reason = (str(exc) or type(exc).__name__)[:80]
                opened.errors[reason] = opened.errors.get(reason, 0) + 1
                if viewer.transport is not None:
                    viewer.transport.abort()
                return
            now = time.monotonic()
            viewers.append(viewer)
            opened.latencies.append(now - started)
            opened.ready += 1
            opened.resumed += how == RESUMED
            opened.seconds = max(opened.seconds, now - began)

    await asyncio.gather(*(open_one(path) for path in paths))
    opened.cpu_s = self_cpu_s() - cpu0
    return opened
