"""The run as a PNG: reservations per second, stock left and fan-out p99 over time, with each
injected fault marked (a vertical line and its name).

Rates and lag come from the summary's per-second series (counted by the users' clocks, not by
when the master heard of them); stock left from the command's own polls of the sale."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def peak(series: list[dict[str, Any]], key: str = "reserve") -> float:
    return float(max((row.get(key, 0) for row in series), default=0))


def draw(
    path: Path,
    series: list[dict[str, Any]],
    stock: list[dict[str, Any]],
    sale_epoch_s: float | None,
    title: str,
    faults: list[tuple[float, str]] | None = None,
) -> None:
    """`faults`: (epoch seconds, name) of each injected fault."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = [float(row["t"]) for row in series[:1] + stock[:1]]
    t0 = min(starts, default=0.0)
    figure, (rate, left, lag) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    figure.suptitle(title, fontsize=10)

    seconds = [row["t"] + 0.5 - t0 for row in series]
    for key, label in (("reserve", "reservation attempts/s"), ("holds", "holds/s")):
        rate.plot(seconds, [row.get(key, 0) for row in series], label=label)
    rate.plot(seconds, [row.get("orders", 0) for row in series], label="orders/s")
    for key, label in (("unavailable", "503/s"), ("server_errors", "other 5xx/s")):
        if any(row.get(key) for row in series):
            rate.plot(seconds, [row.get(key, 0) for row in series], label=label, linestyle=":")
    rate.set_ylabel("per second")
    rate.legend(loc="upper right")

    times = [row["t"] - t0 for row in stock]
    for key, label in (("remaining", "stock left"), ("held", "held"), ("sold", "sold")):
        left.plot(times, [row.get(key, 0) for row in stock], label=label)
    left.set_ylabel("items")
    left.legend(loc="upper right")

    points = [(row["t"] + 0.5 - t0, row["lag_p99"]) for row in series if row.get("lag_p99")]
    lag.plot([p[0] for p in points], [p[1] for p in points], marker=".", label="fan-out lag p99")
    lag.set_ylabel("ms")
    lag.set_xlabel("seconds since the first sample")
    lag.legend(loc="upper right")

    for axis in (rate, left, lag):
        axis.grid(alpha=0.3)
        if sale_epoch_s:
            axis.axvline(sale_epoch_s - t0, color="grey", linestyle="--", linewidth=1)
        for at, _ in faults or []:
            axis.axvline(at - t0, color="red", linestyle="-", linewidth=1, alpha=0.6)
    for at, name in faults or []:
        rate.annotate(
            name,
            (at - t0, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=8,
            color="red",
        )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
