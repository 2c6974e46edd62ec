"""Counters and a latency histogram that add up across locust workers.

Each process that runs users keeps one pending Tally; a worker ships it to the master with every
report (`drain`), the master `merge`s it into its totals. The histogram rounds like locust's own
(exact below 100 ms, to 10 ms below 1 s, to 100 ms above), so percentiles match its reports."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

# Counts also kept per wall-clock second, for the time series of the report: the users' calls
# answered 503 (a store away), answered another 5xx, or not answered at all.
SERIES = {
    "reserve": "reserve",
    "reserve_hold": "holds",
    "confirm_ok": "orders",
    "events": "events",
    "unavailable": "unavailable",
    "server_errors": "server_errors",
    "no_answer": "no_answer",
}


def bucket(ms: float) -> int:
    value = max(0, round(ms))
    if value < 100:
        return value
    if value < 1000:
        return round(value, -1)
    return round(value, -2)


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a {bucket: count} histogram; None when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lag: Counter[int] = Counter()
        self.highs: dict[str, int] = {}
        self.seconds: dict[int, Counter[str]] = {}
        self.second_lag: dict[int, Counter[int]] = {}
        # Chaos runs: every reserve and confirm as [started, answered (epoch s), kind, status,
        # error code]; status 0 when no answer came. Judged against the faults' times at the end.
        self.calls: list[list[Any]] = []
        # Set when the test is stopping: lag measured while the load generator tears down its
        # users says nothing about the service.
        self.measuring = True

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        if name in SERIES:
            self.seconds.setdefault(int(time.time()), Counter())[name] += n

    def lag_ms(self, ms: float) -> None:
        if not self.measuring:
            return
        value = bucket(ms)
        self.lag[value] += 1
        self.second_lag.setdefault(int(time.time()), Counter())[value] += 1

    def call(self, started: float, answered: float, kind: str, status: int, code: str) -> None:
        self.calls.append([round(started, 3), round(answered, 3), kind, status, code])

    def high(self, name: str, value: int) -> None:
        """Keep the largest value seen (e.g. the most items one buyer ever owned)."""
        if value > self.highs.get(name, value - 1):
            self.highs[name] = value

    def export(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "lag": [[k, v] for k, v in self.lag.items()],
            "highs": dict(self.highs),
            "seconds": [[t, dict(c)] for t, c in self.seconds.items()],
            "second_lag": [[t, [[k, v] for k, v in c.items()]] for t, c in self.second_lag.items()],
            "calls": list(self.calls),
        }

    def drain(self) -> dict[str, Any]:
        """What was gathered since the last drain, as plain data; starts afresh."""
        data = self.export()
        self.counts.clear()
        self.lag.clear()
        self.highs.clear()
        self.seconds.clear()
        self.second_lag.clear()
        self.calls.clear()
        return data

    def merge(self, data: Mapping[str, Any]) -> None:
        self.counts.update({str(k): int(v) for k, v in data.get("counts", {}).items()})
        self.lag.update({int(k): int(v) for k, v in data.get("lag", [])})
        for name, value in data.get("highs", {}).items():
            self.high(str(name), int(value))
        for t, counts in data.get("seconds", []):
            self.seconds.setdefault(int(t), Counter()).update(
                {str(k): int(v) for k, v in counts.items()}
            )
        for t, pairs in data.get("second_lag", []):
            self.second_lag.setdefault(int(t), Counter()).update({int(k): int(v) for k, v in pairs})
        self.calls.extend(list(call) for call in data.get("calls", []))

    def lag_percentile(self, q: float) -> float | None:
        return percentile(self.lag, q)

    def series(self) -> list[dict[str, Any]]:
        """One row per second: what happened in it (by the users' clocks) and its lag."""
        rows = []
        for t in sorted(set(self.seconds) | set(self.second_lag)):
            counts = self.seconds.get(t, Counter())
            lag = self.second_lag.get(t, Counter())
            row: dict[str, Any] = {
                "t": t,
                **{key: counts.get(name, 0) for name, key in SERIES.items()},
            }
            row["lag_p50"] = percentile(lag, 0.5)
            row["lag_p99"] = percentile(lag, 0.99)
            rows.append(row)
        return rows
