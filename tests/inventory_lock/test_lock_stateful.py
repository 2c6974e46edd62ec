"""Random interleavings of reserve, confirm, abort, cancel, expiry, sleeps and the steps of
repairs (fence with a token, adopt orders, unfence with that token or another; a fence whose
lease passes; a restart of Redis as the pool sees it), checked step by step against a model,
with the invariant verified from the keys after every step.

Hypothesis drives rules synchronously, so the async client lives on an event loop in a thread of
its own and each rule hands its coroutine over. Expiry is decided by the server's clock: each
call is bracketed by two reads of it, and the model accepts either outcome only for a hold whose
expiry falls between them.
"""

from __future__ import annotations

import asyncio
import time

from hold_machine import HoldMachine, ModelHold
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from lock_helpers import LEASE_S, gather, id_parts, run_lock_machine, wait_until_ms

from inventory_lock import (
    Adopted,
    CheckReport,
    Hold,
    HoldState,
    OrderFact,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
    ReserveResult,
    Snapshot,
    TransitionReason,
)
from inventory_lock.codec import text

STOCK, LIMIT, HOLD_MS = 8, 3, 30
COUNTED = (HoldState.HELD, HoldState.CONFIRMING, HoldState.CONFIRMED)
BUYERS = ("ann", "bob", "cy", "dee")
# An order the system of record has for: a hold the model knows (by index), with its own buyer and
# qty or another's (a reissued id), or an id Redis never saw (in the form of this release or an
# older one).
ORDER_KINDS = ("own", "other", "new", "legacy")
TOKENS = ("repair-a", "repair-b")  # repairs that fence, and unfence with their token or not
SHORT_LEASE_S = 0.02  # a fence whose repairer died: the `lapse` rule waits for it to pass
OTHER_RUN = "0" * 40  # the run id before a restart, as the `restart` rule writes it


class PoolMachine(HoldMachine):
    counting = COUNTED
    expiring = (HoldState.HELD,)

    def __init__(self) -> None:
        super().__init__("sm", STOCK, LIMIT, HOLD_MS)
        # The pool's repair state: the token of the last fence (None once unfenced), whether its
        # lease still runs, whether it was made under the server's run, and whether the pool was
        # brought up to date under the server's run.
        self.fence_token: str | None = None
        self.lease_runs = False
        self.fence_of_this_run = False
        self.pool_of_this_run = True
        self.last_seq = 0
        self.orders = 0

    # -- model ---------------------------------------------------------------------------------

    def state(self) -> str:
        """'ok', 'fenced' or 'stale' (see pool_state in lua/_prelude.lua): a fence whose lease
        runs stops sales; one whose lease passed, or a pool of another run, must be repaired."""
        if self.fence_token is not None:
            return "fenced" if self.lease_runs and self.fence_of_this_run else "stale"
        return "ok" if self.pool_of_this_run else "stale"

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

    def pick(self, index: int) -> ModelHold | None:
        """As HoldMachine.pick; with no hold yet, the drawn call is made with unknown ids."""
        if not self.holds:
            self.unknown_hold()
        return super().pick(index)

    # -- rules ---------------------------------------------------------------------------------

    def expect_reserve(
        self, buyer: str, qty: int, key: str, result: ReserveResult, before: int, after: int
    ) -> None:
        """Checks one answer against the model, as the next reserve in sequence, and applies it."""
        known = self.by_key.get((buyer, key))
        if known is not None and self.holds[known].buyer != buyer:
            known = None  # adopt made the hold another buyer's order: not a replay any more
        state = self.state()
        if qty < 1:
            assert result == Rejection(RejectReason.INVALID)
        elif state != "ok":  # before anything else, replays included
            assert result == Rejection(RejectReason(state)), (state, result)
            event("reserve", state)
        elif known is not None:
            h = self.holds[known]
            assert isinstance(result, Hold) and result.replay, result
            assert (result.id, result.state, result.qty) == (known, h.state, h.qty)
            assert result.remaining == STOCK - self.counted()
        elif self.closed:
            assert result == Rejection(RejectReason.CLOSED)
        elif self.counted() >= STOCK:  # above it once adopt took what Redis over-promised
            assert result == Rejection(RejectReason.SOLD_OUT)
        elif self.counted(buyer) + qty > LIMIT:
            assert result == Rejection(RejectReason.LIMIT)
        elif STOCK - self.counted() < qty:
            assert result == Rejection(RejectReason.SOLD_OUT)
        else:
            assert isinstance(result, Hold) and not result.replay, result
            assert result.id not in self.holds
            pool, seq, _ = id_parts(result.id)
            assert pool == self.pool and seq > self.last_seq
            self.last_seq = seq
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
        # a pool that does not sell is left untouched: nothing is reclaimed
        self.sync_expiries(before, after, reclaims_all=self.state() == "ok")
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
        reclaims = self.state() == "ok" and any(qty > 0 for _, qty, _ in batch)
        self.sync_expiries(before, after, reclaims_all=reclaims)
        assert len(results) == len(batch)
        for (buyer, qty, key), result in zip(batch, results, strict=True):
            self.expect_reserve(buyer, qty, key, result, before, after)
        nonces = {id_parts(r.id)[2] for r in results if isinstance(r, Hold) and not r.replay}
        assert len(nonces) <= 1, "one script call, one nonce"

    @rule(index=st.integers(0, 29))
    def begin_confirm(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        before, result, after = self.timed(self.lock.begin_confirm(h.id))
        self.expect_begin_confirm(h, result, before, after)
        self.sync_expiries(before, after, reclaims_all=False)

    @rule(index=st.integers(0, 29), release=st.booleans())
    def abort_confirm(self, index: int, release: bool) -> None:
        h = self.pick(index)
        if h is None:
            return
        result = self.runner.run(self.lock.abort_confirm(h.id, release))
        self.expect_abort_confirm(h, result, release)

    @rule(index=st.integers(0, 29))
    def cancel(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        before, result, after = self.timed(self.lock.cancel(h.id))
        self.expect_cancel(h, result, before, after)
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
        """Ids of either form that nothing made (reserve counts from the server time in
        microseconds, order_fact from 1)."""
        for hold_id in (f"{self.pool}.0", f"{self.pool}.0-{0:016x}"):
            result = self.runner.run(self.lock.begin_confirm(hold_id))
            assert (result.ok, result.reason) == (False, TransitionReason.NOT_FOUND)

    @rule(ms=st.sampled_from([5, HOLD_MS + 5]))
    def sleep(self, ms: int) -> None:
        time.sleep(ms / 1000)

    @precondition(lambda self: not self.closed and self.steps >= 10)
    @rule()
    def close(self) -> None:
        assert self.runner.run(self.lock.close(self.pool)).ok
        self.closed = True

    def fenced_by(self, token: str, lease_s: float) -> tuple[int, int]:
        """Fences with `token` (taking the pool over from any other repair); returns the server
        clock before and after, which bracket the fence's start."""
        # the figures a fence carries matter only for a missing pool
        before, result, after = self.timed(
            self.lock.fence(self.pool, STOCK + 5, LIMIT, 1, token, lease_s)
        )
        assert result == PoolChange(self.pool, True), result
        if self.fence_token is not None and self.fence_token != token:
            event("fence", "takes over another repair's fence")
        self.fence_token, self.lease_runs, self.fence_of_this_run = token, True, True
        return before, after

    @rule(token=st.sampled_from(TOKENS))
    def fence(self, token: str) -> None:
        """With a lease no example outlives (only `lapse` fences with one that passes)."""
        self.fenced_by(token, LEASE_S)

    @rule(token=st.sampled_from(TOKENS))
    def lapse(self, token: str) -> None:
        """A repair fences and dies: waits (server clock) until its lease has passed."""
        _, after = self.fenced_by(token, SHORT_LEASE_S)
        self.runner.run(wait_until_ms(self.client, after + round(SHORT_LEASE_S * 1000)))
        self.lease_runs = False

    @rule()
    def restart(self) -> None:
        """What a restart of Redis (a new run id, every key kept) looks like to the pool: its
        run ids become another run's, a fence's too (then the pool is stale at once)."""
        self.runner.run(self.forge_other_run())
        self.pool_of_this_run = self.fence_of_this_run = False

    async def forge_other_run(self) -> None:
        meta = self.lock.keys(self.pool).meta
        fenced = await self.client.hget(meta, "fenced")
        await self.client.hset(meta, "run_id", OTHER_RUN)
        if fenced is not None:  # "<run id>:<token>": the run id has 40 characters
            await self.client.hset(meta, "fenced", OTHER_RUN + text(fenced)[len(OTHER_RUN) :])

    @rule(token=st.sampled_from(TOKENS))
    def repair(self, token: str) -> None:
        """A repair that runs to its end (nothing to adopt): the pool sells again, whatever
        state it was in."""
        self.fence(token)
        self.unfence(token)
        assert self.state() == "ok"

    @rule(token=st.sampled_from(TOKENS))
    def unfence(self, token: str) -> None:
        """Only the last repair to fence, under the server's run, unfences: not one whose fence
        another took over, nor one Redis restarted under, nor any once the pool is unfenced. A
        fence whose lease passed may still be ended by its own repair (none took it over)."""
        result = self.runner.run(self.lock.unfence(self.pool, token))
        if self.fence_token == token and self.fence_of_this_run:
            assert result == PoolChange(self.pool, True), result
            self.fence_token, self.lease_runs, self.pool_of_this_run = None, False, True
            event("unfence", "done")
        else:
            assert result == PoolChange(self.pool, False, PoolReason.STALE), result
            event("unfence", "refused")

    def order_fact(self, kind: str, index: int, buyer: str, qty: int) -> OrderFact:
        if kind in ("own", "other") and self.holds:
            h = self.holds[sorted(self.holds)[index % len(self.holds)]]
            return OrderFact(h.id, h.buyer, h.qty) if kind == "own" else OrderFact(h.id, buyer, qty)
        self.orders += 1  # no hold yet, or an id Redis never handed out
        if kind == "legacy":
            return OrderFact(f"{self.pool}.{self.orders}", buyer, qty)
        return OrderFact(f"{self.pool}.{self.orders}-{self.orders:016x}", buyer, qty)

    @rule(
        orders=st.lists(
            st.tuples(
                st.sampled_from(ORDER_KINDS),
                st.integers(0, 29),
                st.sampled_from(BUYERS),
                st.integers(1, LIMIT),
            ),
            max_size=4,
        )
    )
    def adopt(self, orders: list[tuple[str, int, str, int]]) -> None:
        """The orders become confirmed holds whatever the model had of them, one after another;
        a record of another buyer or qty is replaced (a mismatch). No clock race: adopt never
        expires anything, and a held hold past its expiry is still held until reclaimed."""
        facts = [self.order_fact(*order) for order in orders]
        result = self.runner.run(self.lock.adopt(self.pool, facts))
        unique = list(dict.fromkeys(facts))  # the same order twice counts once
        if len({fact.hold_id for fact in unique}) < len(unique):
            assert result == PoolChange(self.pool, False, PoolReason.INVALID)
            event("adopt", "one id, two orders: refused")
            return
        adopted, qty, mismatches = 0, 0, 0
        for fact in unique:
            h = self.holds.get(fact.hold_id)
            if h is not None and (h.buyer, h.qty) != (fact.buyer, fact.qty):
                mismatches += 1
                h = None
            if h is not None and h.state is HoldState.CONFIRMED:
                continue
            adopted, qty = adopted + 1, qty + fact.qty
            if h is None:
                h = ModelHold(fact.hold_id, fact.buyer, fact.qty, 0, HoldState.CONFIRMED)
                self.holds[fact.hold_id] = h
            h.state = HoldState.CONFIRMED
        assert result == Adopted(self.pool, adopted, qty, mismatches, STOCK - self.counted())
        event("adopt", "mismatch" if mismatches else "adopted" if adopted else "nothing new")
        if self.counted() > STOCK:
            event("adopt", "remaining below zero")
        if any(self.counted(buyer) > LIMIT for buyer in BUYERS):
            event("adopt", "a buyer above the limit")

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def counts_match_model_and_records(self) -> None:
        self.steps += 1
        report, snapshot = self.runner.run(self.check_and_snapshot())
        assert report is not None and snapshot is not None
        # adopt records every order: remaining may go below zero, a buyer above the limit
        expected = {"remaining is negative"} if self.counted() > STOCK else set()
        expected |= {
            f"buyer {buyer!r} has {self.counted(buyer)} > limit {LIMIT}"
            for buyer in BUYERS
            if self.counted(buyer) > LIMIT
        }
        assert set(report.problems) == expected, report
        state = self.state()
        assert (snapshot.stale, snapshot.fenced) == (state == "stale", state == "fenced"), state
        by_state = {
            state: sum(h.qty for h in self.holds.values() if h.state is state) for state in COUNTED
        }
        assert (snapshot.held, snapshot.confirming, snapshot.confirmed) == tuple(by_state.values())
        assert snapshot.remaining == STOCK - self.counted()
        assert snapshot.buyers == len({h.buyer for h in self.holds.values() if h.state in COUNTED})

    async def check_and_snapshot(self) -> tuple[CheckReport | None, Snapshot | None]:
        return await asyncio.gather(self.lock.check(self.pool), self.lock.snapshot(self.pool))


def test_random_interleavings_keep_the_invariant(backend: tuple[str, str], namespace: str) -> None:
    run_lock_machine(PoolMachine, backend, namespace, examples=50, steps=30)
