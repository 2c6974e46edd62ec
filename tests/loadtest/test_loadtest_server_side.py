"""The server's figures of a run (loadtest/server_side.py): histograms read from /metrics text as
prometheus_client writes it, the run's share as the difference of two scrapes, and its quantile
estimated as histogram_quantile does, checked against a direct computation."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from loadtest import server_side

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
seconds = st.floats(0.0, 8.0, allow_nan=False)


def _scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def _direct(q: float, run: list[float]) -> float:
    """histogram_quantile by hand from the run's observations: the bucket holding the rank,
    then linear within it; in +Inf the highest finite bound."""
    rank = q * len(run)
    below, lower = 0, 0.0
    for bound in (*BOUNDS, math.inf):
        inside = sum(1 for value in run if lower < value <= bound or (lower == 0 == value))
        if below + inside >= rank and inside:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / inside
        below, lower = below + inside, bound
    return lower


@settings(max_examples=200, deadline=None)
@given(
    st.lists(seconds, max_size=30),
    st.lists(seconds, min_size=1, max_size=60),
    st.sampled_from([0.5, 0.9, 0.99]),
)
def test_the_runs_quantile_is_histogram_quantile_of_its_observations(
    earlier: list[float], run: list[float], q: float
) -> None:
    registry = CollectorRegistry()
    lag = Histogram("live_gateway_fanout_lag_seconds", "lag", registry=registry, buckets=BOUNDS)
    other = Histogram(
        "live_http_request_duration_seconds",
        "http",
        ["route", "method"],
        registry=registry,
        buckets=BOUNDS,
    )
    for value in earlier:
        lag.observe(value)
    before = _scrape(registry)
    for value in run:
        lag.observe(value)
        other.labels("/api/sales/{sale}/reservations", "GET").observe(value)
    after = _scrape(registry)

    delta = server_side.delta(
        server_side.buckets(before, server_side.FANOUT),
        server_side.buckets(after, server_side.FANOUT),
    )
    assert delta[math.inf] == len(run)
    found = server_side.quantile(q, delta)
    assert found is not None
    assert math.isclose(found, _direct(q, run), rel_tol=1e-9, abs_tol=1e-12)
    # Another route's or method's series is not the reserve's.
    assert server_side.buckets(after, server_side.HTTP, server_side.RESERVE_ROUTE) == {}


@given(st.lists(st.tuples(st.integers(0, 9000), st.integers(1, 50)), min_size=1, max_size=40))
def test_the_testers_figures_go_through_the_same_buckets(pairs: list[tuple[int, int]]) -> None:
    """The tester's {ms: count} in the server's buckets: the same estimate as the server would
    make of the same observations."""
    run = [ms / 1000 for ms, count in pairs for _ in range(count)]
    cumulative = server_side.bucketed(((ms / 1000, n) for ms, n in pairs), BOUNDS)
    assert cumulative[math.inf] == len(run)
    assert math.isclose(
        server_side.quantile(0.99, cumulative) or 0.0, _direct(0.99, run), abs_tol=1e-12
    )


def test_an_empty_run_has_no_quantile() -> None:
    assert server_side.quantile(0.99, {}) is None
    assert server_side.quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None
    assert server_side.sides({}, "", "") == []
