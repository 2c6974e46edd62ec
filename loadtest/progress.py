"""While locust runs: poll the sale's figures, read the master's timeline, show one progress line
(rewritten in place on a terminal, a new line every few seconds otherwise) and keep the stock
samples for the chart."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from loadtest.api import Api, TransportError

POLL_S = 0.5
PLAIN_EVERY_S = 5.0


@dataclass
class Samples:
    """Stock figures over time (epoch seconds) from the CLI's own polls."""

    stock: list[dict[str, Any]] = field(default_factory=list)


def read_timeline(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return rows


def _line(elapsed: float, row: dict[str, Any] | None, figures: dict[str, Any] | None) -> str:
    parts = [f"{elapsed:6.1f}s"]
    if row is not None:
        parts.append(f"connected {row.get('connected', 0):>6}")
        parts.append(f"reservations {row['reserve']:>6} (holds {row['holds']})")
        parts.append(f"orders {row['confirmed']:>5}")
        lag = row.get("lag_p99")
        parts.append(f"fan-out p99 {'-' if lag is None else f'{lag:.0f} ms'}")
    if figures is not None:
        parts.append(
            f"stock left {figures.get('remaining')}/{figures.get('stock')} "
            f"(held {figures.get('held')}, sold {figures.get('sold')}, {figures.get('state')})"
        )
    return "  ".join(parts)


def watch(
    api: Api,
    sale: int,
    timeline: Path,
    running: Callable[[], bool],
    deadline_s: float,
    stream: TextIO = sys.stdout,
    on_tick: Callable[[], None] | None = None,
) -> Samples:
    """Until `running()` is false or the deadline passes; returns the stock samples."""
    samples = Samples()
    started = time.time()
    tty = stream.isatty()
    last_plain = 0.0
    line = ""
    while running() and time.time() - started < deadline_s:
        if on_tick is not None:
            on_tick()
        figures: dict[str, Any] | None = None
        try:
            answer = api.get(f"/api/sales/{sale}")
            if answer.ok:
                figures = answer.body
                samples.stock.append({"t": time.time(), **figures})
        except TransportError:
            pass
        rows = read_timeline(timeline)
        line = _line(time.time() - started, rows[-1] if rows else None, figures)
        if tty:
            stream.write("\r" + line[:200].ljust(120))
            stream.flush()
        elif time.time() - last_plain >= PLAIN_EVERY_S:
            stream.write(line + "\n")
            stream.flush()
            last_plain = time.time()
        time.sleep(POLL_S)
    stream.write(("\r" + line[:200].ljust(120) + "\n") if tty else "")
    stream.flush()
    return samples
