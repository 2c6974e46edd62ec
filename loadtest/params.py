"""The knobs of a flash-sale simulation, as locust custom arguments with environment fallbacks.

Every option `--live-x-y` can also be given as `LIVE_LOADTEST_X_Y`. A master sends its parsed
options to its workers with each spawn message, so workers need none of them on their own
command line (the JWT secret included).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

ENV_PREFIX = "LIVE_LOADTEST_"
TIMELINE = "timeline.jsonl"  # in `out`: one row a second from the master
SUMMARY = "summary.json"  # in `out`: the master's summary at the end
CALLS = "calls.json"  # in `out`, chaos runs only: every reserve and confirm with its times


def default_sale_at(users: int, spawn_rate: float, duration_s: float) -> float:
    """When the host opens the sale (s after the test starts): once every user is spawned."""
    return min(users / spawn_rate + 2.0, duration_s / 2)


def buy_margin_s(run_time_s: float) -> float:
    """Buyers start nothing in the last seconds of the run, so that no confirm is cut off."""
    return min(5.0, run_time_s * 0.25)


@dataclass(frozen=True)
class Params:
    room: str = ""  # empty: the master creates a room, a product and a sale at test start
    sale: int = 0
    product: int = 0
    jwt_secret: str = ""  # empty: LIVE_JWT_SECRET, else the development secret of LIVE_DATA_DIR
    stock: int = 100
    limit: int = 1
    hold_seconds: int = 10
    price_cents: int = 1999
    confirm_share: float = 0.7
    think_min: float = 0.2
    think_max: float = 2.0
    sale_at: float = 5.0  # seconds after the test starts
    sale_epoch_ms: int = 0  # set by the master at test start: when the host starts the sale
    buy_until_epoch_ms: int = 0  # set by the master: buyers start nothing later (0: no end)
    host_every: float = 3.0
    comment_every: float = 0.0  # seconds between one viewer's comments; 0: viewers stay quiet
    buyers: int = 0  # fixed number of Buyer users; 0: as many as locust's -u leaves
    viewers: int = 0  # viewers on raw sockets, shared among the processes (loadtest/viewers.py)
    viewer_processes: int = 1  # processes running users (locust workers, or 1 without)
    viewer_rate: float = 50.0  # viewers connected per second, all processes together
    probe_every: int = 20  # one viewer in this many decodes every frame (lag, seq)
    max_p99_ms: float = 0.0  # 0: no threshold
    max_error_rate: float = 1.0  # 1: no threshold
    out: str = ""  # directory for timeline.jsonl and summary.json; empty: none written
    chaos: str = ""  # faults injected during the run (comma-separated): 503s are expected answers

    def think_range(self) -> tuple[float, float]:
        """Think time between hold and confirm, kept well inside the hold time."""
        high = min(self.think_max, self.hold_seconds * 0.5)
        return min(self.think_min, high), high

    @classmethod
    def from_options(cls, options: Any) -> Params:
        """From locust's parsed options (attributes `live_<field>`); missing ones keep defaults."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = getattr(options, f"live_{field.name}", None)
            if value is not None:
                values[field.name] = type(getattr(cls(), field.name))(value)
        return cls(**values)


_HELP = {
    "room": "room id; empty: create a room, product and sale at test start",
    "sale": "sale id to buy from (0: create one)",
    "product": "product id the host pins (0: the sale's product when created here)",
    "jwt_secret": "the service's JWT secret (default LIVE_JWT_SECRET or the dev secret)",
    "stock": "stock of a sale created here",
    "limit": "limit per buyer of a sale created here",
    "hold_seconds": "hold time of a sale created here",
    "price_cents": "price of a sale created here",
    "confirm_share": "share of holds a buyer confirms (the rest are abandoned and expire)",
    "think_min": "shortest think time between hold and confirm, seconds",
    "think_max": "longest think time between hold and confirm, seconds",
    "sale_at": "seconds after test start at which the host starts the sale",
    "sale_epoch_ms": "internal: the moment of the sale start, set by the master",
    "buy_until_epoch_ms": "internal: buyers start no reservation or confirm after this",
    "host_every": "seconds between the host's messages and pins",
    "comment_every": "seconds between one viewer's comments (0: no comments)",
    "buyers": "number of Buyer users (0: as many as -u leaves beside the host)",
    "viewers": "viewers on raw sockets, spread over the worker processes (not locust users)",
    "viewer_processes": "processes sharing the viewers: the locust workers (1 without workers)",
    "viewer_rate": "viewers connected per second, all processes together",
    "probe_every": "one viewer in this many decodes every frame (lag, seq); the rest count",
    "max_p99_ms": "fail when reserve, confirm or fan-out p99 exceeds this (0: off)",
    "max_error_rate": "fail when the share of failed actions exceeds this (1: off)",
    "out": "directory for timeline.jsonl and summary.json",
    "chaos": "faults injected during the run: 503 is an expected answer, every call is recorded",
}


def add_arguments(parser: Any) -> None:
    """Register `--live-*` on locust's argument parser (init_command_line_parser)."""
    defaults = Params()
    for field in fields(Params):
        default = getattr(defaults, field.name)
        option = "--live-" + field.name.replace("_", "-")
        extra: dict[str, Any] = {}
        if field.name == "jwt_secret":
            extra["is_secret"] = True
        if field.name.endswith("_epoch_ms"):
            extra["include_in_web_ui"] = False
        parser.add_argument(
            option,
            type=type(default),
            default=default,
            env_var=ENV_PREFIX + field.name.upper(),
            help=_HELP[field.name],
            **extra,
        )
