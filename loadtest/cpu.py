"""Where the CPU went during a run: the service's process tree (with its Redis and PostgreSQL),
locust's processes and the whole machine, from /proc (Linux; nothing elsewhere).

On a small machine the load generator and the service share the cores; these figures say which
of them was the limit, and whether something else was running."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (e.g. a data dir: daemonized servers)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _tree(roots: list[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
    found = {pid for pid in roots if pid in parents}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores)."""
    first = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


PEAK_WINDOW_S = 5.0  # a process's peak is its busiest stretch of this length (as locust's check)


class CpuMeter:
    """Sample now and then; `cores()` is the average number of cores each group kept busy,
    `seconds()` the CPU seconds it used, `peak()` its busiest process's busiest stretch."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.available = (PROC / "stat").exists()
        self.first: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.last: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.started = time.monotonic()
        self.ended = self.started
        self.busy_start = self.busy_end = _machine_busy() if self.available else 0.0
        self.history: dict[str, dict[int, list[tuple[float, float]]]] = {n: {} for n in groups}

    def sample(self) -> None:
        if not self.available:
            return
        for name, roots in self.groups.items():
            for pid in _tree(roots()):
                stat = _stat(pid)
                if stat is not None:
                    self.first[name].setdefault(pid, stat[1])
                    self.last[name][pid] = stat[1]
                    self.history[name].setdefault(pid, []).append((time.monotonic(), stat[1]))
        self.ended = time.monotonic()
        self.busy_end = _machine_busy()

    def cores(self) -> dict[str, float]:
        span = self.ended - self.started
        if not self.available or span <= 0:
            return {}
        used = {
            name: sum(self.last[name][pid] - self.first[name][pid] for pid in self.last[name])
            / span
            for name in self.groups
        }
        used["machine"] = (self.busy_end - self.busy_start) / span
        return used

    def seconds(self, name: str) -> float:
        return sum(self.last[name][pid] - self.first[name][pid] for pid in self.last[name])

    def peak(self, name: str) -> float | None:
        """The highest share of a core one process of `name` used over PEAK_WINDOW_S (None
        before any such stretch was sampled)."""
        best: float | None = None
        for samples in self.history[name].values():
            start = 0
            for end in range(len(samples)):
                while start + 1 < end and samples[end][0] - samples[start + 1][0] >= PEAK_WINDOW_S:
                    start += 1
                span = samples[end][0] - samples[start][0]
                if span >= PEAK_WINDOW_S:
                    share = (samples[end][1] - samples[start][1]) / span
                    best = share if best is None else max(best, share)
        return best


def describe(cores: dict[str, float]) -> str:
    if not cores:
        return "not measured"
    parts = [f"{name} {value:.2f}" for name, value in cores.items() if name != "machine"]
    rest = cores["machine"] - sum(v for k, v in cores.items() if k != "machine")
    return (
        ", ".join(parts)
        + f", everything else {max(rest, 0.0):.2f}; machine {cores['machine']:.2f}"
        + f" of {os.cpu_count() or '?'} cores (averages over the run)"
    )
