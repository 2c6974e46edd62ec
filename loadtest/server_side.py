"""The service's own timing of a run, from its /metrics histograms scraped before and after
(gateway/timing.py): the run's share is the difference of the cumulative bucket counts, and its
quantiles are estimated as Prometheus' histogram_quantile does (linear within the bucket). The
load tester's figures are set beside them, also in the server's buckets, so that both sides go
through the same estimator."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

FANOUT = "live_gateway_fanout_lag_seconds"
HTTP = "live_http_request_duration_seconds"
RESERVE_ROUTE = {"route": "/api/sales/{sale}/reservations", "method": "POST"}

Buckets = dict[float, float]  # upper bound (s) -> cumulative count; math.inf for +Inf


def scrape(base_url: str, timeout_s: float = 10.0) -> str:
    """The service's /metrics text ("" when it cannot be read: the comparison is then left out)."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/metrics", timeout=timeout_s) as got:
            return str(got.read().decode())
    except OSError:
        return ""


def buckets(text: str, name: str, labels: Mapping[str, str] | None = None) -> Buckets:
    """The cumulative buckets of histogram `name` whose labels include `labels`, summed over
    the series that match."""
    found: Buckets = {}
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        if family.name != name.removesuffix("_seconds") and family.name != name:
            continue
        for sample in family.samples:
            if sample.name != f"{name}_bucket":
                continue
            if any(sample.labels.get(k) != v for k, v in wanted.items()):
                continue
            bound = float(sample.labels["le"])
            found[bound] = found.get(bound, 0.0) + float(sample.value)
    return found


def delta(before: Buckets, after: Buckets) -> Buckets:
    """What was observed between the two scrapes (a bucket missing before counted 0 then)."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile(q: float, cumulative: Buckets) -> float | None:
    """histogram_quantile(q): the q-quantile (0..1) in the histogram's unit; None when empty.
    In the +Inf bucket it is the highest finite bound."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def bucketed(values: Iterable[tuple[float, int]], bounds: Iterable[float]) -> Buckets:
    """(value, count) pairs as cumulative counts in `bounds` (the same unit), +Inf included."""
    edges = sorted(set(bounds) | {math.inf})
    counts = dict.fromkeys(edges, 0.0)
    for value, count in values:
        for edge in edges:
            if value <= edge:
                counts[edge] += count
                break
    running = 0.0
    for edge in edges:
        running += counts[edge]
        counts[edge] = running
    return counts


@dataclass(frozen=True)
class Side:
    """One figure's p99 as the load tester saw it (raw, and in the server's buckets) and as the
    server timed it, in ms."""

    name: str
    tester_ms: float | None
    tester_bucketed_ms: float | None
    server_ms: float | None
    observed: int  # the server's observations in the run

    @property
    def ratio(self) -> float | None:
        """The tester's p99 over the server's, both through the same buckets."""
        if not self.tester_bucketed_ms or not self.server_ms:
            return None
        return self.tester_bucketed_ms / self.server_ms


def side(
    name: str,
    tester_ms: float | None,
    tester_histogram: Mapping[int, int],
    run: Buckets,
    q: float = 0.99,
) -> Side:
    """`tester_histogram`: the tester's {ms: count}; `run`: the server's delta buckets (s)."""
    server = quantile(q, run)
    mine = bucketed(((ms / 1000, n) for ms, n in tester_histogram.items()), run)
    same = quantile(q, mine) if tester_histogram else None
    return Side(
        name,
        tester_ms,
        None if same is None else same * 1000,
        None if server is None else server * 1000,
        int(max(run.values(), default=0)),
    )


def sides(summary: Mapping[str, Any], before: str, after: str) -> list[Side]:
    """Fan-out lag and reserve, the tester's (summary.json) beside the server's for the run."""
    if not before or not after:
        return []
    fan = summary.get("fan_out", {})
    reserve = summary.get("request_types", {}).get("reserve", {})
    return [
        side(
            "fan-out lag",
            fan.get("p99"),
            {int(ms): int(n) for ms, n in fan.get("histogram", [])},
            delta(buckets(before, FANOUT), buckets(after, FANOUT)),
        ),
        side(
            "reserve",
            reserve.get("p99"),
            {int(ms): int(n) for ms, n in reserve.get("histogram", [])},
            delta(buckets(before, HTTP, RESERVE_ROUTE), buckets(after, HTTP, RESERVE_ROUTE)),
        ),
    ]


def lines(found: list[Side]) -> list[str]:
    if not found:
        return [f"  {'server side':<12} /metrics not read: no comparison"]
    out = [f"  {'p99':<12} load tester (raw; in the server's buckets) vs the server's /metrics"]
    for one in found:
        ratio = "-" if one.ratio is None else f"{one.ratio:.2f}"
        out.append(
            f"    {one.name:<12} tester {_ms(one.tester_ms)} ({_ms(one.tester_bucketed_ms)})"
            f"  server {_ms(one.server_ms)} ({one.observed} observed)  ratio {ratio}"
        )
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
