"""What the stateful tests of Lua scripts on the real Redis share (tests/auctions/
test_bid_stateful.py, tests/group_deals/test_group_stateful.py): a machine that runs each call
on an event loop and a Redis client of its own, and the settings it is run with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from live.redis_client import open_redis

T = TypeVar("T")


class ScriptMachine(RuleBasedStateMachine):
    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = open_redis(redis_url, 10)

    def run(self, call: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(call, 30))

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()


def run_machine(machine: type[RuleBasedStateMachine]) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
