"""Random interleavings of reserve, confirm, abort, cancel, expiry and sleeps, checked step by
step against a model, with the invariant verified from the keys after every step.

Hypothesis drives rules synchronously, so the async client lives on an event loop in a thread of
its own and each rule hands its coroutine over. Expiry is decided by the server's clock: each
call is bracketed by two reads of it, and the model accepts either outcome only for a hold whose
expiry falls between them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from lock_helpers import new_pool, open_client, server_ms

from inventory_lock import (
    CheckReport,
    Hold,
    HoldState,
    InventoryLock,
    Rejection,
    RejectReason,
    ReserveRequest,
    ReserveResult,
    Snapshot,
    Transition,
    TransitionReason,
)
from inventory_lock.scripts import Client

T = TypeVar("T")
STOCK, LIMIT, HOLD_MS = 8, 3, 30
COUNTED = (HoldState.HELD, HoldState.CONFIRMING, HoldState.CONFIRMED)
BUYERS = ("ann", "bob", "cy", "dee")


async def gather(*coros: Coroutine[Any, Any, T]) -> list[T]:
    return list(await asyncio.gather(*coros))


class LoopThread:
    """An event loop running in its own thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


@dataclass
class ModelHold:
    id: str
    buyer: str
    qty: int
    expires_at_ms: int
    state: HoldState


class PoolMachine(RuleBasedStateMachine):
    runner: LoopThread
    client: Client
    lock: InventoryLock

    def __init__(self) -> None:
        super().__init__()
        self.pool = new_pool("sm")
        self.holds: dict[str, ModelHold] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.closed = False
        self.steps = 0
        assert self.runner.run(self.lock.load(self.pool, STOCK, LIMIT, HOLD_MS / 1000)).ok

    # -- model ---------------------------------------------------------------------------------

    def counted(self, buyer: str | None = None) -> int:
        return sum(
            h.qty
            for h in self.holds.values()
            if h.state in COUNTED and (buyer is None or h.buyer == buyer)
        )

    def timed(self, coro: Coroutine[Any, Any, T]) -> tuple[int, T, int]:
        """The call's result between two readings of the server clock."""
        before = self.runner.run(server_ms(self.client))
        result = self.runner.run(coro)
        return before, result, self.runner.run(server_ms(self.client))

    def sync_expiries(self, before: int, after: int, reclaims_all: bool) -> list[ModelHold]:
        """Holds the call expired; when it reclaims all due holds, none due at `before` is left."""
        expired = []
        held = [h for h in self.holds.values() if h.state is HoldState.HELD]
        records = self.runner.run(gather(*(self.lock.get_hold(h.id) for h in held)))
        for h, record in zip(held, records, strict=True):
            assert record is not None
            if record.state is HoldState.EXPIRED:
                assert h.expires_at_ms <= after, "expired before its time"
                h.state = HoldState.EXPIRED
                expired.append(h)
            else:
                assert record.state is HoldState.HELD
                assert not reclaims_all or h.expires_at_ms > before, "due hold not reclaimed"
        return expired

    def expect(self, h: ModelHold, result: Transition, ok: bool, state: HoldState) -> None:
        reason = None if ok else TransitionReason.WRONG_STATE
        if not ok and h.state is HoldState.EXPIRED:
            reason = TransitionReason.EXPIRED
        assert (result.ok, result.reason, result.state) == (ok, reason, state), (h, result)
        h.state = state

    def expect_expiry_race(
        self, h: ModelHold, result: Transition, before: int, after: int, success: HoldState
    ) -> None:
        """A held hold: it moves to `success` unless it was due when the script ran."""
        if result.ok:
            assert h.expires_at_ms > before, "acted on a hold that was already due"
            self.expect(h, result, True, success)
        else:
            assert h.expires_at_ms <= after, "refused a hold that was not due yet"
            h.state = HoldState.EXPIRED
            self.expect(h, result, False, HoldState.EXPIRED)

    def pick(self, index: int) -> ModelHold | None:
        """A hold by a drawn index. What is drawn must not depend on outcomes (they depend on
        the clock) or hypothesis cannot replay an example, hence no preconditions on holds."""
        if not self.holds:
            self.unknown_hold()
            return None
        return self.holds[sorted(self.holds)[index % len(self.holds)]]

    # -- rules ---------------------------------------------------------------------------------

    def expect_reserve(
        self, buyer: str, qty: int, key: str, result: ReserveResult, before: int, after: int
    ) -> None:
        """Checks one answer against the model, as the next reserve in sequence, and applies it."""
        known = self.by_key.get((buyer, key))
        if qty < 1:
            assert result == Rejection(RejectReason.INVALID)
        elif known is not None:
            h = self.holds[known]
            assert isinstance(result, Hold) and result.replay, result
            assert (result.id, result.state, result.qty) == (known, h.state, h.qty)
            assert result.remaining == STOCK - self.counted()
        elif self.closed:
            assert result == Rejection(RejectReason.CLOSED)
        elif self.counted() == STOCK:
            assert result == Rejection(RejectReason.SOLD_OUT)
        elif self.counted(buyer) + qty > LIMIT:
            assert result == Rejection(RejectReason.LIMIT)
        elif STOCK - self.counted() < qty:
            assert result == Rejection(RejectReason.SOLD_OUT)
        else:
            assert isinstance(result, Hold) and not result.replay, result
            assert result.id not in self.holds and result.id.startswith(f"{self.pool}.")
            assert (result.buyer, result.qty) == (buyer, qty)
            assert before + HOLD_MS <= result.expires_at_ms <= after + HOLD_MS
            self.holds[result.id] = ModelHold(
                result.id, buyer, qty, result.expires_at_ms, HoldState.HELD
            )
            self.by_key[(buyer, key)] = result.id
            assert result.remaining == STOCK - self.counted()

    @rule(buyer=st.sampled_from(BUYERS), qty=st.integers(1, 3), key=st.sampled_from("xyz"))
    def reserve(self, buyer: str, qty: int, key: str) -> None:
        before, result, after = self.timed(self.lock.reserve(self.pool, buyer, qty, key))
        self.sync_expiries(before, after, reclaims_all=True)
        self.expect_reserve(buyer, qty, key, result, before, after)

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(BUYERS), st.integers(0, LIMIT + 1), st.sampled_from("xyz")),
            min_size=1,
            max_size=12,
        )
    )
    def reserve_many(self, batch: list[tuple[str, int, str]]) -> None:
        """One call for the whole batch answers each request as the sequence of singles would."""
        requests = [ReserveRequest(self.pool, buyer, qty, key) for buyer, qty, key in batch]
        before, results, after = self.timed(self.lock.reserve_many(requests))
        # Invalid requests never reach Redis: a batch of only those reclaims nothing.
        self.sync_expiries(before, after, reclaims_all=any(qty > 0 for _, qty, _ in batch))
        assert len(results) == len(batch)
        for (buyer, qty, key), result in zip(batch, results, strict=True):
            self.expect_reserve(buyer, qty, key, result, before, after)

    @rule(index=st.integers(0, 29))
    def begin_confirm(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        before, result, after = self.timed(self.lock.begin_confirm(h.id))
        if h.state is HoldState.HELD:
            self.expect_expiry_race(h, result, before, after, HoldState.CONFIRMING)
        elif h.state in (HoldState.CONFIRMING, HoldState.CONFIRMED):
            self.expect(h, result, True, h.state)
        else:
            self.expect(h, result, False, h.state)
        self.sync_expiries(before, after, reclaims_all=False)

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

    @rule(index=st.integers(0, 29), release=st.booleans())
    def abort_confirm(self, index: int, release: bool) -> None:
        h = self.pick(index)
        if h is None:
            return
        result = self.runner.run(self.lock.abort_confirm(h.id, release))
        target = HoldState.RELEASED if release else HoldState.HELD
        if h.state in (HoldState.CONFIRMING, target):
            self.expect(h, result, True, target)
        else:
            self.expect(h, result, False, h.state)

    @rule(index=st.integers(0, 29))
    def cancel(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        before, result, after = self.timed(self.lock.cancel(h.id))
        if h.state is HoldState.HELD:
            self.expect_expiry_race(h, result, before, after, HoldState.RELEASED)
        else:
            self.expect(h, result, h.state is HoldState.RELEASED, h.state)
        self.sync_expiries(before, after, reclaims_all=False)

    @rule()
    def expire_due(self) -> None:
        before, result, after = self.timed(self.lock.expire_due(self.pool))
        expired = self.sync_expiries(before, after, reclaims_all=True)
        assert result is not None
        assert (result.holds, result.qty) == (len(expired), sum(h.qty for h in expired))
        assert result.remaining == STOCK - self.counted()

    @rule()
    def unknown_hold(self) -> None:
        result = self.runner.run(self.lock.begin_confirm(f"{self.pool}.1"))
        assert (result.ok, result.reason) == (False, TransitionReason.NOT_FOUND)

    @rule(ms=st.sampled_from([5, HOLD_MS + 5]))
    def sleep(self, ms: int) -> None:
        time.sleep(ms / 1000)

    @precondition(lambda self: not self.closed and self.steps >= 10)
    @rule()
    def close(self) -> None:
        assert self.runner.run(self.lock.close(self.pool)).ok
        self.closed = True

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def counts_match_model_and_records(self) -> None:
        self.steps += 1
        report, snapshot = self.runner.run(self.check_and_snapshot())
        assert report is not None and report.ok, report
        assert snapshot is not None
        by_state = {
            state: sum(h.qty for h in self.holds.values() if h.state is state) for state in COUNTED
        }
        assert (snapshot.held, snapshot.confirming, snapshot.confirmed) == tuple(by_state.values())
        assert snapshot.remaining == STOCK - self.counted()
        assert snapshot.buyers == len({h.buyer for h in self.holds.values() if h.state in COUNTED})
        assert all(self.counted(buyer) <= LIMIT for buyer in BUYERS)

    async def check_and_snapshot(self) -> tuple[CheckReport | None, Snapshot | None]:
        return await asyncio.gather(self.lock.check(self.pool), self.lock.snapshot(self.pool))

    def teardown(self) -> None:
        self.runner.run(self.lock.drop(self.pool))


def test_random_interleavings_keep_the_invariant(backend: tuple[str, str], namespace: str) -> None:
    runner = LoopThread()
    client = runner.run(open_client(*backend))
    try:

        class Machine(PoolMachine):
            pass

        Machine.runner, Machine.client = runner, client
        Machine.lock = InventoryLock(client, prefix=namespace)
        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=50,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        runner.run(client.aclose())
        runner.close()
