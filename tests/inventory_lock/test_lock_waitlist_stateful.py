"""Random interleavings of reserve, joining and leaving the waitlist, cancel (of holds and of
offers), confirm and its rollback, expiry, taking offers and closing, checked step by step
against a model of the pool and its queue, with the invariant (offered holds counted) verified
from the keys after every step.

Expiry is decided by the server's clock (see test_lock_stateful.py): what a call expired is
read back from the records and accepted only for holds due by the clock after it. What the call
then offered is checked strictly: the waiters it took from the queue are the first in line, in
order; each got one offered hold of one unit, unless they were at the limit (skipped); and
while anyone waits, nothing is left in stock.
"""

from __future__ import annotations

import time

from hold_machine import HoldMachine, ModelHold
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from lock_helpers import id_parts, run_lock_machine

from inventory_lock import (
    Hold,
    HoldRecord,
    HoldState,
    Rejection,
    RejectReason,
    Waiting,
    WaitReason,
)
from inventory_lock.codec import record, text

STOCK, LIMIT, HOLD_MS, MAX_WAITING = 3, 2, 100, 4
COUNTED = (HoldState.HELD, HoldState.OFFERED, HoldState.CONFIRMING, HoldState.CONFIRMED)
EXPIRING = (HoldState.HELD, HoldState.OFFERED)
BUYERS = ("ann", "bob", "cy", "dee", "eve")


class WaitlistMachine(HoldMachine):
    counting = COUNTED
    expiring = EXPIRING

    def __init__(self) -> None:
        super().__init__("ws", STOCK, LIMIT, HOLD_MS)
        self.queue: list[str] = []
        self.taken: set[str] = set()  # offers handed out by take_offers

    # -- model ---------------------------------------------------------------------------------

    def remaining(self) -> int:
        return STOCK - self.counted()

    async def records(self) -> tuple[list[HoldRecord], list[str]]:
        keys = self.lock.keys(self.pool)
        raw = await self.client.hgetall(keys.holds)
        waiters: list[bytes] = await self.client.zrange(keys.waiters, 0, -1)  # type: ignore[assignment]
        return [record(text(k), v) for k, v in raw.items()], [text(w) for w in waiters]

    def observe(
        self, before: int, after: int, counted_before: dict[str, int], made: str = ""
    ) -> None:
        """What the call did besides its own answer: holds it expired, waiters it took from the
        queue and the offers it made them (`made`: the id of a hold the call itself made)."""
        found, waiters = self.runner.run(self.records())
        by_id = {r.id: r for r in found}
        for h in self.holds.values():
            now = by_id[h.id].state
            if h.state in EXPIRING and now is HoldState.EXPIRED:
                assert h.expires_at_ms <= after, "expired before its time"
                h.state = HoldState.EXPIRED
                event("expired", h.state.value)
        new = sorted(
            (r for r in found if r.id not in self.holds and r.id != made),
            key=lambda r: id_parts(r.id)[1],
        )
        assert all((r.state, r.qty) == (HoldState.OFFERED, 1) for r in new), new
        assert waiters == self.queue[len(self.queue) - len(waiters) :], (waiters, self.queue)
        popped = self.queue[: len(self.queue) - len(waiters)]
        given = 0
        for waiter in popped:
            if given < len(new) and new[given].buyer == waiter:
                offer = new[given]
                assert before + HOLD_MS <= offer.expires_at_ms <= after + HOLD_MS
                self.holds[offer.id] = ModelHold(
                    offer.id, waiter, 1, offer.expires_at_ms, HoldState.OFFERED
                )
                given += 1
                event("offer", "made")
            else:
                assert counted_before.get(waiter, 0) >= LIMIT, f"{waiter} skipped below the limit"
                event("offer", "waiter at the limit skipped")
        assert given == len(new), "an offer to someone not first in line"
        self.queue = waiters

    def counts(self) -> dict[str, int]:
        return {buyer: self.counted(buyer) for buyer in BUYERS}

    # -- rules ---------------------------------------------------------------------------------

    @rule(buyer=st.sampled_from(BUYERS), qty=st.integers(1, 2), key=st.sampled_from("xy"))
    def reserve(self, buyer: str, qty: int, key: str) -> None:
        counted_before = self.counts()
        before, result, after = self.timed(self.lock.reserve(self.pool, buyer, qty, key))
        made = result.id if isinstance(result, Hold) and not result.replay else ""
        self.observe(before, after, counted_before, made)  # reserve reclaims first
        known = self.by_key.get((buyer, key))
        if known is not None:
            assert isinstance(result, Hold) and result.replay and result.id == known, result
        elif self.closed:
            assert result == Rejection(RejectReason.CLOSED)
        elif self.remaining() <= 0:
            assert result == Rejection(RejectReason.SOLD_OUT), result
            event("reserve", "sold out")
        elif self.counted(buyer) + qty > LIMIT:
            assert result == Rejection(RejectReason.LIMIT)
        elif self.remaining() < qty:
            assert result == Rejection(RejectReason.SOLD_OUT)
        else:
            assert isinstance(result, Hold) and not result.replay, result
            assert not self.queue, "sold to a reserve while buyers wait"
            self.holds[result.id] = ModelHold(
                result.id, buyer, qty, result.expires_at_ms, HoldState.HELD
            )
            self.by_key[(buyer, key)] = result.id

    @rule(key=st.sampled_from("xy"))
    def sell_out(self, key: str) -> None:
        """Reserves one unit for each buyer in turn: what is left goes (a waitlist is only
        joined when nothing is left)."""
        for buyer in BUYERS:
            self.reserve(buyer, 1, key)

    @rule(buyer=st.sampled_from(BUYERS))
    def join(self, buyer: str) -> None:
        result = self.runner.run(self.lock.waitlists.join(self.pool, buyer, MAX_WAITING))
        if self.closed:
            expected = Waiting(False, 0, WaitReason.CLOSED)
        elif buyer in self.queue:
            expected = Waiting(False, self.queue.index(buyer) + 1, WaitReason.ALREADY_WAITING)
        elif self.remaining() > 0:
            expected = Waiting(False, 0, WaitReason.NOT_SOLD_OUT)
        elif self.counted(buyer) >= LIMIT:
            expected = Waiting(False, 0, WaitReason.LIMIT)
        elif len(self.queue) >= MAX_WAITING:
            expected = Waiting(False, 0, WaitReason.FULL)
        else:
            self.queue.append(buyer)
            expected = Waiting(True, len(self.queue))
        assert result == expected, (result, expected)
        event("join", expected.reason.value if expected.reason else "joined")

    @rule()
    def everyone_joins(self) -> None:
        for buyer in BUYERS:
            self.join(buyer)

    @rule(buyer=st.sampled_from(BUYERS))
    def leave(self, buyer: str) -> None:
        left = self.runner.run(self.lock.waitlists.leave(self.pool, buyer))
        assert left is (buyer in self.queue)
        if left:
            self.queue.remove(buyer)

    @rule(index=st.integers(0, 29))
    def cancel(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        counted_before = self.counts()
        before, result, after = self.timed(self.lock.cancel(h.id))
        self.expect_cancel(h, result, before, after)
        self.observe(before, after, counted_before)

    @rule(index=st.integers(0, 29))
    def begin_confirm(self, index: int) -> None:
        h = self.pick(index)
        if h is None:
            return
        counted_before = self.counts()
        before, result, after = self.timed(self.lock.begin_confirm(h.id))
        self.expect_begin_confirm(h, result, before, after)
        self.observe(before, after, counted_before)

    @rule(index=st.integers(0, 29), release=st.booleans())
    def abort_confirm(self, index: int, release: bool) -> None:
        h = self.pick(index)
        if h is None:
            return
        counted_before = self.counts()
        before, result, after = self.timed(self.lock.abort_confirm(h.id, release))
        self.expect_abort_confirm(h, result, release)
        self.observe(before, after, counted_before)

    @rule()
    def expire_due(self) -> None:
        counted_before = self.counts()
        due = [h for h in self.holds.values() if h.state in EXPIRING]
        before, result, after = self.timed(self.lock.expire_due(self.pool))
        self.observe(before, after, counted_before)
        assert result is not None
        assert all(h.expires_at_ms > before for h in due if h.state in EXPIRING), "left a due hold"

    @rule()
    def take_offers(self) -> None:
        taken = self.runner.run(self.lock.waitlists.take_offers(self.pool))
        for offer in taken:
            assert offer.id not in self.taken, "an offer handed out twice"
            assert self.holds[offer.id].state is HoldState.OFFERED
            self.taken.add(offer.id)
        event("take_offers", str(len(taken)))

    @rule(ms=st.sampled_from([5, HOLD_MS + 5]))
    def sleep(self, ms: int) -> None:
        time.sleep(ms / 1000)

    @precondition(lambda self: not self.closed and self.steps >= 30)
    @rule()
    def close(self) -> None:
        assert self.runner.run(self.lock.close(self.pool)).ok
        self.closed = True

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def counts_match_model_and_records(self) -> None:
        self.steps += 1
        report = self.runner.run(self.lock.check(self.pool))
        snapshot = self.runner.run(self.lock.snapshot(self.pool))
        assert report is not None and report.ok, report
        assert snapshot is not None
        by_state = [sum(h.qty for h in self.holds.values() if h.state is s) for s in COUNTED]
        got = [snapshot.held, snapshot.offered, snapshot.confirming, snapshot.confirmed]
        assert got == by_state, (got, by_state)
        assert snapshot.remaining == self.remaining()
        assert snapshot.waiting == len(self.queue) == report.waiting
        if self.queue and not self.closed:
            assert snapshot.remaining <= 0, "stock left while buyers wait"


def test_random_interleavings_with_a_waitlist(backend: tuple[str, str], namespace: str) -> None:
    run_lock_machine(WaitlistMachine, backend, namespace, examples=80, steps=40)
