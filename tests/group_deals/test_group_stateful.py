"""Random starts, joins (of forming, full, failed and unknown groups, twice), leaves, settles
of full groups either way (and replays), windows closing, sweeps and a close, sent to the group
pool's Lua scripts on the real Redis and checked call by call against a pure Python model
(group_model), with the pool's counters, every group and every buyer's places compared after
every step, and the stock invariant: stock = remaining + held + filling + sold."""

from __future__ import annotations

import json
from typing import Any

from group_model import ModelPool
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from script_machine import ScriptMachine, run_machine

from flash_sales.group_deals.model import GroupState
from flash_sales.group_deals.pool import GroupPool

BUYERS = ("ann", "bob", "cy", "dee", "eve")
STOCK, SIZE, LIMIT = 7, 3, 2
WINDOW_MS = 3_600_000


def machine(redis_url: str, prefix: str) -> type[RuleBasedStateMachine]:
    class Groups(ScriptMachine):
        def __init__(self) -> None:
            super().__init__(redis_url)
            self.pool = GroupPool(self.client, prefix)
            self.sale = Groups.next_id = getattr(Groups, "next_id", 0) + 1
            opened = self.run(self.pool.open(self.sale, STOCK, SIZE, WINDOW_MS, LIMIT, "e1", 0))
            assert opened.code == "opened"
            self.model = ModelPool(STOCK, SIZE, LIMIT)
            self.next_gid = 1

        def teardown(self) -> None:
            self.run(self.client.delete(*self.pool.keys(self.sale).all))
            super().teardown()

        def known(self, index: int) -> int:
            """One of the groups made so far (or one never made, when there is none)."""
            if self.next_gid == 1:
                return 999
            return 1 + index % (self.next_gid - 1) if index >= 0 else 999

        @initialize()
        def two_groups(self) -> None:
            """Two groups to join from the first step on (more are started by `start`)."""
            self.start("ann")
            self.start("bob")

        @rule(buyer=st.sampled_from(BUYERS))
        def start(self, buyer: str) -> None:
            gid = self.next_gid
            got = self.run(self.pool.join(self.sale, gid, buyer, start=True))
            expected = self.model.join(gid, buyer, True)
            assert got.code == expected, (got, expected)
            if expected == "joined":
                self.next_gid += 1

        @rule(buyer=st.sampled_from(BUYERS), index=st.integers(-1, 20))
        def restart_same_id(self, buyer: str, index: int) -> None:
            """A start replayed with an id already taken: `member` or `exists`."""
            if self.next_gid == 1 or index < 0:
                return
            gid = self.known(index)
            got = self.run(self.pool.join(self.sale, gid, buyer, start=True))
            assert got.code == self.model.join(gid, buyer, True) != "joined", got

        @rule(buyer=st.sampled_from(BUYERS), index=st.integers(-1, 20))
        def join(self, buyer: str, index: int) -> None:
            gid = self.known(index)
            got = self.run(self.pool.join(self.sale, gid, buyer, start=False))
            expected = self.model.join(gid, buyer, False)
            assert got.code == expected, (got, expected)
            if got.group is not None and gid in self.model.groups:
                assert list(got.group.members) == self.model.groups[gid].members

        @rule(buyer=st.sampled_from(BUYERS), index=st.integers(0, 20))
        def join_forming(self, buyer: str, index: int) -> None:
            """A join of a group still forming (so that groups fill)."""
            forming = sorted(g for g, m in self.model.groups.items() if m.state == "forming")
            if forming:
                self.join(buyer, forming[index % len(forming)] - 1)

        @rule(buyer=st.sampled_from(BUYERS), index=st.integers(-1, 20))
        def leave(self, buyer: str, index: int) -> None:
            gid = self.known(index)
            got = self.run(self.pool.leave(self.sale, gid, buyer))
            assert got.code == self.model.leave(gid, buyer), got

        @rule(index=st.integers(-1, 20), formed=st.booleans())
        def settle(self, index: int, formed: bool) -> None:
            gid = self.known(index)
            outcome = GroupState.FORMED if formed else GroupState.FAILED
            got = self.run(self.pool.settle(self.sale, gid, outcome))
            assert got.code == self.model.settle(gid, outcome.value), got

        @rule(index=st.integers(0, 20))
        def close_window(self, index: int) -> None:
            """A group's window closes (as if its time came): due from now on."""
            gid = self.known(index)
            g = self.model.groups.get(gid)
            if g is None or g.state != "forming":
                return
            keys = self.pool.keys(self.sale)
            raw: Any = self.run(self.client.hget(keys.groups, str(gid)))
            record = json.loads(raw)
            record["closes_at"] = 1000
            self.run(self.client.hset(keys.groups, str(gid), json.dumps(record)))
            self.run(self.client.zadd(keys.due, {str(gid): 1000}))
            g.due = True

        @rule()
        def expire_due(self) -> None:
            code, failed = self.run(self.pool.expire_due(self.sale))
            assert code == "ok"
            expected = self.model.expire_due()
            assert {gid for gid, _ in failed} == expected

        @rule(draw=st.integers(0, 9))
        def close(self, draw: int) -> None:
            """The sale stops (now and then: a closed pool only refuses)."""
            if draw or not self.model.open:
                return
            code, failed = self.run(self.pool.close(self.sale, 3_600_000))
            assert code == "closed"
            assert {gid for gid, _ in failed} == self.model.close()

        @invariant()
        def agrees(self) -> None:
            figures = self.run(self.pool.peek(self.sale, list(range(1, self.next_gid))))
            assert figures is not None and figures.status == "ok"
            m = self.model
            counts = (figures.remaining, figures.held, figures.filling, figures.sold)
            assert counts == (m.remaining, m.held, m.filling, m.sold)
            assert STOCK == m.remaining + m.held + m.filling + m.sold
            assert min(counts) >= 0
            assert figures.state == ("open" if m.open else "closed")
            live = {g.id: (g.state.value, list(g.members)) for g in figures.groups}
            assert live == {gid: (g.state, g.members) for gid, g in m.groups.items()}
            places: dict[Any, Any] = self.run(self.client.hgetall(self.pool.keys(self.sale).buyers))
            assert {k.decode(): int(v) for k, v in places.items()} == m.buyers
            assert all(n <= LIMIT for n in m.buyers.values())
            for g in m.groups.values():
                if g.state == "forming":
                    assert 0 < len(g.members) < SIZE
                elif g.state in ("filling", "formed"):
                    assert len(g.members) == SIZE

    return Groups


def test_the_group_scripts_agree_with_the_model(redis_url: str, namespace: str) -> None:
    run_machine(machine(redis_url, namespace))
