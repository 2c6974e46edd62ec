"""The model of a pool's holds that the stateful tests keep (test_lock_stateful.py,
test_lock_waitlist_stateful.py), and what they check alike: the answers of begin_confirm,
finish_confirm, abort_confirm and cancel. Each machine says which states count against the
stock and which expire by the clock, and what else a call did (expiries, offers)."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from lock_helpers import LoopThread, new_pool, server_ms

from inventory_lock import HoldState, InventoryLock, Transition, TransitionReason
from inventory_lock.scripts import Client

T = TypeVar("T")


@dataclass
class ModelHold:
    id: str
    buyer: str
    qty: int
    expires_at_ms: int
    state: HoldState


class HoldMachine(RuleBasedStateMachine):
    # set by run_lock_machine: the loop in a thread of its own that runs each call, the client
    # and the lock
    runner: LoopThread
    client: Client
    lock: InventoryLock
    counting: ClassVar[tuple[HoldState, ...]]  # the states whose holds count against the stock
    expiring: ClassVar[tuple[HoldState, ...]]  # the states a hold expires from by the clock

    def __init__(self, tag: str, stock: int, limit: int, hold_ms: int) -> None:
        super().__init__()
        self.pool = new_pool(tag)
        self.holds: dict[str, ModelHold] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.closed = False
        self.steps = 0
        assert self.runner.run(self.lock.load(self.pool, stock, limit, hold_ms / 1000)).ok

    def counted(self, buyer: str | None = None) -> int:
        return sum(
            h.qty
            for h in self.holds.values()
            if h.state in self.counting and (buyer is None or h.buyer == buyer)
        )

    def timed(self, coro: Coroutine[Any, Any, T]) -> tuple[int, T, int]:
        """The call's result between two readings of the server clock."""
        before = self.runner.run(server_ms(self.client))
        result = self.runner.run(coro)
        return before, result, self.runner.run(server_ms(self.client))

    def pick(self, index: int) -> ModelHold | None:
        """A hold by a drawn index. What is drawn must not depend on outcomes (they depend on
        the clock) or hypothesis cannot replay an example, hence no preconditions on holds."""
        if not self.holds:
            return None
        return self.holds[sorted(self.holds)[index % len(self.holds)]]

    def expect(self, h: ModelHold, result: Transition, ok: bool, state: HoldState) -> None:
        reason = None if ok else TransitionReason.WRONG_STATE
        if not ok and h.state is HoldState.EXPIRED:
            reason = TransitionReason.EXPIRED
        assert (result.ok, result.reason, result.state) == (ok, reason, state), (h, result)
        h.state = state

    def expect_expiry_race(
        self, h: ModelHold, result: Transition, before: int, after: int, success: HoldState
    ) -> None:
        """A hold that expires: it moves to `success` unless it was due when the script ran."""
        if result.ok:
            assert h.expires_at_ms > before, "acted on a hold that was already due"
            self.expect(h, result, True, success)
        else:
            assert h.expires_at_ms <= after, "refused a hold that was not due yet"
            h.state = HoldState.EXPIRED
            self.expect(h, result, False, HoldState.EXPIRED)

    def expect_begin_confirm(
        self, h: ModelHold, result: Transition, before: int, after: int
    ) -> None:
        if h.state in self.expiring:
            self.expect_expiry_race(h, result, before, after, HoldState.CONFIRMING)
        elif h.state in (HoldState.CONFIRMING, HoldState.CONFIRMED):
            self.expect(h, result, True, h.state)
        else:
            self.expect(h, result, False, h.state)

    def expect_abort_confirm(self, h: ModelHold, result: Transition, release: bool) -> None:
        target = HoldState.RELEASED if release else HoldState.HELD
        if h.state in (HoldState.CONFIRMING, target):
            self.expect(h, result, True, target)
        else:
            self.expect(h, result, False, h.state)

    def expect_cancel(self, h: ModelHold, result: Transition, before: int, after: int) -> None:
        if h.state in self.expiring:
            self.expect_expiry_race(h, result, before, after, HoldState.RELEASED)
        else:
            self.expect(h, result, h.state is HoldState.RELEASED, h.state)

    @rule(index=st.integers(0, 29))
    def finish_confirm(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        result = self.runner.run(self.lock.finish_confirm(h.id))
        if h.state in (HoldState.CONFIRMING, HoldState.CONFIRMED):
            self.expect(h, result, True, HoldState.CONFIRMED)
        else:
            self.expect(h, result, False, h.state)

    def teardown(self) -> None:
        self.runner.run(self.lock.drop(self.pool))
