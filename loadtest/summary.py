"""The end-of-run summary the master writes (summary.json) and the thresholds it judges.

Per request type (reserve, confirm, host, WS connect, WS drop, WS event, WS replay) the entries
of locust's stats are merged into one: count, failures, throughput and percentiles. Fan-out lag
comes from the users' tally (live events only, replays excluded)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from loadtest.params import Params
from loadtest.tally import Tally, percentile

# Request types that are measurements, not actions: they never fail and do not count in the
# error rate.
MEASUREMENTS = frozenset({"WS event", "WS replay"})
P99_CHECKED = ("reserve", "confirm")


@dataclass(frozen=True)
class Check:
    name: str
    limit: float
    value: float | None
    ok: bool

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "value": self.value, "ok": self.ok}


def request_types(entries: Any, since: float | None = None) -> dict[str, dict[str, Any]]:
    """Merge locust StatsEntry objects by request type. Throughput is over the time from
    `since` (or the stats' start) to the type's last request."""
    merged: dict[str, dict[str, Any]] = {}
    histograms: dict[str, Counter[int]] = {}
    for entry in entries:
        row = merged.setdefault(
            entry.method,
            {"count": 0, "failures": 0, "start": entry.start_time, "last": 0.0, "max": 0.0},
        )
        row["count"] += entry.num_requests
        row["failures"] += entry.num_failures
        row["start"] = min(row["start"], entry.start_time)
        row["last"] = max(row["last"], entry.last_request_timestamp or 0.0)
        row["max"] = max(row["max"], entry.max_response_time or 0.0)
        histograms.setdefault(entry.method, Counter()).update(entry.response_times)
    for kind, row in merged.items():
        begin = since if since is not None and kind in P99_CHECKED else row["start"]
        window = max(row["last"] - begin, 1e-9)
        row["rps"] = row["count"] / window if row["count"] else 0.0
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            row[name] = percentile(histograms[kind], q)
        if kind in P99_CHECKED:  # for the comparison with the server's own histogram
            row["histogram"] = sorted(histograms[kind].items())
        del row["start"], row["last"]
    return merged


def error_rate(types: dict[str, dict[str, Any]]) -> float:
    actions = [row for kind, row in types.items() if kind not in MEASUREMENTS]
    total = sum(row["count"] for row in actions)
    return sum(row["failures"] for row in actions) / total if total else 0.0


def thresholds(params: Params, types: dict[str, dict[str, Any]], tally: Tally) -> list[Check]:
    checks: list[Check] = []
    if params.max_p99_ms > 0:
        limit = params.max_p99_ms
        for kind in P99_CHECKED:
            if kind in types:
                value = types[kind]["p99"]
                checks.append(Check(f"{kind} p99 ms", limit, value, (value or 0) <= limit))
        lag = tally.lag_percentile(0.99)
        checks.append(Check("fan-out lag p99 ms", limit, lag, (lag or 0) <= limit))
    if params.max_error_rate < 1:
        rate = error_rate(types)
        checks.append(
            Check("error rate", params.max_error_rate, rate, rate <= params.max_error_rate)
        )
    return checks


def build(
    params: Params, entries: Any, tally: Tally, users: dict[str, int], started: float, ended: float
) -> dict[str, Any]:
    sale_start = params.sale_epoch_ms / 1000 if params.sale_epoch_ms else None
    types = request_types(entries, sale_start)
    checks = thresholds(params, types, tally)
    return {
        "room": params.room,
        "sale": params.sale,
        "sale_epoch_ms": params.sale_epoch_ms,
        "started": started,
        "ended": ended,
        "users": users,
        "request_types": types,
        "error_rate": error_rate(types),
        "fan_out": {
            "events": tally.counts.get("events", 0),
            "p50": tally.lag_percentile(0.5),
            "p99": tally.lag_percentile(0.99),
            "max": max(tally.lag) if tally.lag else None,
            "histogram": sorted(tally.lag.items()),
        },
        "counts": dict(tally.counts),
        "series": tally.series(),
        "highs": dict(tally.highs),
        "thresholds": [check.view() for check in checks],
        "thresholds_ok": all(check.ok for check in checks),
        "thresholds_set": bool(checks),
    }
