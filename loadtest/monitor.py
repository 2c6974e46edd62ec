"""The master's (or a local runner's) view of a run: the users' tallies added up, one timeline
row a second (timeline.jsonl) and the summary at the end (summary.json)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import gevent

from loadtest import summary
from loadtest.params import CALLS, SUMMARY, TIMELINE, Params
from loadtest.tally import Tally

log = logging.getLogger("loadtest")


class Monitor:
    def __init__(self, environment: Any, local: Tally | None) -> None:
        self.environment = environment
        self.local = local  # the users' tally when they run in this process
        self.total = Tally()
        self.window = Tally()
        self.started = time.time()
        self.out: Path | None = None
        self._sampler: Any = None
        self.starts = 0  # test starts; more than one: locust restarted the test

    def params(self) -> Params:
        return Params.from_options(self.environment.parsed_options)

    def start(self) -> None:
        self.starts += 1
        self.started = time.time()
        self.total, self.window = Tally(), Tally()
        out = self.params().out
        self.out = Path(out) if out else None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / TIMELINE).write_text("")
        if self._sampler is None:
            self._sampler = gevent.spawn(self._sample_forever)

    def merge(self, data: dict[str, Any]) -> None:
        self.total.merge(data)
        self.window.merge({**data, "calls": []})  # the window is for lag and rates only

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if "live" in data:
            self.merge(data["live"])

    def collect(self) -> None:
        if self.local is not None:
            self.merge(self.local.drain())

    def sample(self) -> dict[str, Any]:
        self.collect()
        window, self.window = self.window, Tally()
        counts = self.total.counts
        now = time.time()
        return {
            "t": now,
            "elapsed": now - self.started,
            "users": self.environment.runner.user_count if self.environment.runner else 0,
            "reserve": counts.get("reserve", 0),
            "holds": counts.get("reserve_hold", 0),
            "confirmed": counts.get("confirm_ok", 0),
            "events": counts.get("events", 0),
            "connects": counts.get("connects", 0),
            "connected": counts.get("first_connects", 0),
            "connect_errors": counts.get("connect_errors", 0),
            "drops": counts.get("drops", 0),
            "lag_p50": window.lag_percentile(0.5),
            "lag_p99": window.lag_percentile(0.99),
            "failures": self.environment.stats.total.num_failures,
        }

    def _sample_forever(self) -> None:
        while True:
            gevent.sleep(1.0)
            row = self.sample()
            if self.out is not None:
                with (self.out / TIMELINE).open("a") as timeline:
                    timeline.write(json.dumps(row) + "\n")

    def finish(self) -> dict[str, Any]:
        """The summary; written to summary.json when there is an output directory."""
        self.collect()
        runner = self.environment.runner
        users: dict[str, int] = {}
        if runner is not None:
            counts = getattr(runner, "final_user_classes_count", None) or getattr(
                runner, "user_classes_count", {}
            )
            users = {str(k): int(v) for k, v in counts.items()}
        result = summary.build(
            self.params(),
            self.environment.stats.entries.values(),
            self.total,
            users,
            self.started,
            time.time(),
        )
        result["restarts"] = max(self.starts - 1, 0)
        result["generator_cpu_high"] = bool(
            getattr(runner, "cpu_warning_emitted", False)
            or getattr(runner, "worker_cpu_warning_emitted", False)
        )
        if self.out is not None:
            (self.out / SUMMARY).write_text(json.dumps(result, indent=2))
            if self.total.calls:
                calls = sorted(self.total.calls)
                (self.out / CALLS).write_text(json.dumps(calls, separators=(",", ":")))
        for check in result["thresholds"]:
            state = "ok" if check["ok"] else "BROKEN"
            log.info(
                "threshold %s: %s (limit %s) %s",
                check["name"],
                check["value"],
                check["limit"],
                state,
            )
        return result
