"""The verdict of a simulation: the business invariants (from the sale's figures after the run
settled, the users' own counts and `live reconcile`) and the thresholds, as one table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    detail: str

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Reconciled:
    ran: bool
    code: int
    output: str


def _count(summary: dict[str, Any], name: str) -> int:
    return int(summary.get("counts", {}).get(name, 0))


def _unanswered(counts: dict[str, int], kind: str) -> int:
    """Calls of `kind` started but neither answered nor given up on (no_answer) by the end."""
    answered = sum(
        value
        for name, value in counts.items()
        if name.startswith(f"{kind}_") and name not in (f"{kind}_no_answer", f"{kind}_unknown")
    )
    return max(counts.get(kind, 0) - answered - counts.get(f"{kind}_no_answer", 0), 0)


def load_checks(summary: dict[str, Any], users: int, within_s: float) -> list[Row]:
    """Did the load get through? A run whose users did not all connect within `within_s` of the
    test's start, or whose requests were still waiting at the end (buyers start nothing in the
    last seconds), proves nothing."""
    counts = summary.get("counts", {})
    connected = int(counts.get("first_connects", 0))
    took = connect_s(summary)
    p99 = summary.get("request_types", {}).get("WS connect", {}).get("p99")
    waiting = _unanswered(counts, "reserve") + _unanswered(counts, "confirm")
    return [
        Row(
            f"every user connected within {within_s:g} s",
            connected >= users and took is not None and took <= within_s,
            f"{connected} of {users} viewers and buyers connected, the last "
            + ("-" if took is None else f"{took:.1f} s")
            + f" after the start (connect p99 {_ms(p99)})",
        ),
        Row(
            "every request answered",
            waiting == 0,
            f"{waiting} reservations or confirms still unanswered at the end",
        ),
        _generator(summary),
    ]


def connect_s(summary: dict[str, Any]) -> float | None:
    """Seconds from the test's start to the last viewer's or buyer's first connect."""
    last_ms = summary.get("highs", {}).get("first_connect_ms")
    started = summary.get("started")
    if not last_ms or not started:
        return None
    return max(0.0, float(last_ms) / 1000 - float(started))


def _generator(summary: dict[str, Any]) -> Row:
    restarts = int(summary.get("restarts", 0))
    if restarts:
        detail = (
            f"locust restarted the test {restarts} time(s): a worker missed its heartbeats"
            " (machine overloaded); counts of the first part are lost"
        )
    elif summary.get("generator_cpu_high"):
        detail = (
            "a locust process went above 90% CPU: latencies include its own queueing"
            " (more --workers, or workers on other machines)"
        )
    else:
        detail = "no locust process above 90% CPU, no restart"
    return Row(
        "load generator kept up", not restarts and not summary.get("generator_cpu_high"), detail
    )


def invariants(
    figures: dict[str, Any],
    summary: dict[str, Any],
    reconciled: Reconciled,
    buyers: int,
    *,
    chaos: bool = False,
) -> list[Row]:
    """The business invariants. With `chaos`, the per-buyer limit is judged on acknowledged
    orders only: a fault may make the service forget a hold, and a hold it forgot is not owned,
    so what a buyer believes it holds is no measure then (`live reconcile` checks the stores)."""
    stock, sold = int(figures["stock"]), int(figures["sold"])
    remaining, held = int(figures["remaining"]), int(figures["held"])
    held += int(figures.get("offered", 0))  # units offered to waitlisted buyers are held too
    confirming, orders = int(figures["confirming"]), int(figures["orders"])
    limit = int(figures["limit_per_buyer"])
    holds, attempts = _count(summary, "reserve_hold"), _count(summary, "reserve")
    confirmed, unknown = _count(summary, "confirm_ok"), _count(summary, "confirm_unknown")
    highs = summary.get("highs", {})
    most_orders = int(highs.get("max_orders_per_buyer", 0))
    owned = most_orders if chaos else max(int(highs.get("max_owned_per_buyer", 0)), most_orders)
    foreign = _count(summary, "confirm_foreign")
    rows = [
        Row(
            "sale opened and took holds",
            holds > 0,
            f"{holds} holds from {attempts} reservation attempts",
        ),
        Row("sold <= stock", sold <= stock, f"sold {sold} of {stock}"),
        Row(
            "orders = confirmed",
            confirmed <= orders <= confirmed + unknown,
            f"{orders} orders in PostgreSQL, {confirmed} confirms acknowledged"
            + (f" (+{unknown} without an answer)" if unknown else ""),
        ),
        Row(
            "no buyer over the limit",
            owned <= limit and orders <= buyers * limit,
            (
                f"most orders one buyer was acknowledged: {owned}, limit {limit}"
                if chaos
                else f"most one buyer held or owned at once: {owned}, limit {limit}"
            ),
        ),
        Row(
            "acknowledged orders are the buyer's",
            foreign == 0,
            f"{foreign} confirms answered 201 with an order of another reservation, buyer or"
            f" payment (of {confirmed})",
        ),
        server_errors(summary),
        Row(
            "every hold accounted for",
            remaining + held + confirming + sold == stock,
            f"remaining {remaining} + held {held} + confirming {confirming} + sold {sold}"
            f" = {remaining + held + confirming + sold} (stock {stock})",
        ),
        Row(
            "expired holds returned to stock",
            held == 0 and confirming == 0,
            f"after the holds' expiry: held {held}, confirming {confirming}",
        ),
    ]
    if reconciled.ran:
        last = reconciled.output.strip().splitlines()[-1:] or ["(no output)"]
        rows.append(Row("live reconcile", reconciled.code == 0, last[0].strip()))
    else:
        rows.append(Row("live reconcile", True, "skipped (--skip-reconcile)"))
    return rows


def server_errors(summary: dict[str, Any]) -> Row:
    """Every error is a promised answer: a store away is a 503 (with Retry-After), never a 500."""
    counts: dict[str, int] = summary.get("counts", {})
    errors = {
        k.removeprefix("server_error_"): v
        for k, v in counts.items()
        if k.startswith("server_error_")
    }
    unavailable = {
        k.removeprefix("unavailable_"): v for k, v in counts.items() if k.startswith("unavailable_")
    }
    shown = ", ".join(f"{k.replace('_', ' ')} x{v}" for k, v in sorted(errors.items()))
    served = ", ".join(f"{k} {v}" for k, v in sorted(unavailable.items())) or "none"
    return Row(
        "no 5xx but 503",
        not errors,
        f"other 5xx: {shown or 'none'}; 503s: {served}",
    )


def thresholds(summary: dict[str, Any], locust_code: int) -> list[Row]:
    rows = [
        Row(
            f"threshold: {check['name']}",
            bool(check["ok"]),
            f"{_number(check['value'])} {'<=' if check['ok'] else '>'} {_number(check['limit'])}",
        )
        for check in summary.get("thresholds", [])
    ]
    broken_elsewhere = locust_code != 0 and all(row.ok for row in rows)
    if broken_elsewhere:
        rows.append(Row("locust run", False, f"locust exited with code {locust_code}"))
    return rows


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{int(value)}" if isinstance(value, float) else str(value)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def figures_lines(summary: dict[str, Any], peak_rps: float) -> list[str]:
    types = summary.get("request_types", {})
    counts = summary.get("counts", {})
    lines = []
    for kind in ("reserve", "confirm"):
        row = types.get(kind)
        if row is None:
            lines.append(f"  {kind:<12} no requests")
            continue
        peak = f", peak {peak_rps:.0f}/s" if kind == "reserve" and peak_rps else ""
        lines.append(
            f"  {kind:<12} {row['count']:>7} requests  {row['rps']:8.1f}/s{peak}  "
            f"p50 {_ms(row['p50'])}  p99 {_ms(row['p99'])}  failures {row['failures']}"
        )
    fan = summary.get("fan_out", {})
    lines.append(
        f"  {'fan-out lag':<12} {fan.get('events', 0):>7} events read by probes  "
        f"p50 {_ms(fan.get('p50'))}  p99 {_ms(fan.get('p99'))}  max {_ms(fan.get('max'))}  "
        f"(+{counts.get('events_replayed', 0)} replayed on resume, "
        f"{counts.get('events_skipped', 0)} sampled out, "
        f"{counts.get('seq_regressions', 0)} seq regressions); "
        f"{counts.get('frames', 0)} frames to all viewers"
    )
    connect = types.get("WS connect", {})
    lines.append(
        f"  {'connections':<12} {counts.get('connects', 0):>7} opened  "
        f"errors {counts.get('connect_errors', 0)}  dropped {counts.get('drops', 0)}  "
        f"resumed {counts.get('resumes', 0)}  connect p99 {_ms(connect.get('p99'))}"
    )
    outcomes = ", ".join(
        f"{name.removeprefix('reserve_')} {value}"
        for name, value in sorted(counts.items())
        if name.startswith("reserve_")
    )
    lines.append(f"  {'reservations':<12} {outcomes or '-'}")
    lines.append(
        f"  {'buyers':<12} confirmed {counts.get('confirm_ok', 0)}, abandoned "
        f"{counts.get('abandoned', 0)}, expired before confirm {counts.get('confirm_expired', 0)}"
        f", stopped at the limit {counts.get('buyers_at_limit', 0)}"
    )
    lines.append(f"  {'error rate':<12} {summary.get('error_rate', 0.0):.3%} of actions")
    return lines


def render(title: str, rows: list[Row], lines: list[str]) -> str:
    width = max(len(row.name) for row in rows) if rows else 10
    out = [title, "", f"  {'check':<{width}}  result  detail"]
    out += [
        f"  {row.name:<{width}}  {'pass' if row.ok else 'FAIL':<6}  {row.detail}" for row in rows
    ]
    out += ["", *lines, "", "verdict: " + ("PASS" if all(row.ok for row in rows) else "FAIL")]
    return "\n".join(out)
