"""Batched reads (gateway/batched.py) as pure asyncio: callers of a key at the same time share
one read, and every caller gets a read that began after it called."""

from __future__ import annotations

import asyncio

import pytest

from gateway.batched import Batched


class Store:
    """A value that changes; each read can be held until the test lets it finish."""

    def __init__(self) -> None:
        self.value = 0
        self.reads: list[int] = []  # the value each read saw when it began
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def read(self, key: str) -> tuple[str, int]:
        seen = self.value
        self.reads.append(seen)
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        return key, seen


async def test_callers_at_once_share_one_read() -> None:
    store = Store()
    batched = Batched(store.read)
    results = await asyncio.gather(*(batched.get("room") for _ in range(100)))
    assert store.reads == [0] and batched.reads == 1
    assert all(result == ("room", 0) for result in results)
    other = await batched.get("other")
    assert other == ("other", 0) and batched.reads == 2


async def test_a_caller_during_a_read_gets_the_next_read() -> None:
    store = Store()
    store.gate.clear()
    batched = Batched(store.read)
    early = asyncio.create_task(batched.get("room"))
    await asyncio.sleep(0)  # the first read begins, and waits
    await asyncio.sleep(0)
    assert store.reads == [0]
    store.value = 1  # what changed after the read began...
    late = [asyncio.create_task(batched.get("room")) for _ in range(10)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await early == ("room", 0)
    assert [await task for task in late] == [("room", 1)] * 10  # ...the late callers see
    assert store.reads == [0, 1]


async def test_a_failed_read_fails_its_callers_and_the_next_reads_again() -> None:
    store = Store()
    store.fail = True
    batched = Batched(store.read)
    outcomes = await asyncio.gather(
        *(batched.get("room") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    store.fail = False
    assert await batched.get("room") == ("room", 0)
    assert batched.reads == 2


async def test_a_caller_that_gives_up_leaves_the_others_their_read() -> None:
    store = Store()
    store.gate.clear()
    batched = Batched(store.read)
    quitter = asyncio.create_task(batched.get("room"))
    stayer = asyncio.create_task(batched.get("room"))
    await asyncio.sleep(0)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    store.gate.set()
    assert await stayer == ("room", 0)


async def test_with_spacing_a_key_is_read_at_most_once_per_spacing() -> None:
    store = Store()
    batched = Batched(store.read, spacing_s=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await batched.get("room") == ("room", 0)  # a lone caller does not wait
    assert loop.time() - began < 0.05
    store.gate.clear()
    first = asyncio.create_task(batched.get("room"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.create_task(batched.get("room")) for _ in range(5)]
    store.gate.set()
    await first
    await asyncio.sleep(0.01)  # within the spacing: still one more caller for the same read
    later.append(asyncio.create_task(batched.get("room")))
    await asyncio.gather(*later)
    assert batched.reads == 3


async def test_a_caller_may_take_the_latest_result_when_it_says_it_is_fresh() -> None:
    """`fresh` is the caller's say: the latest result of a key, read before it called, is good
    for it (a replay that reaches its hub's position); else it waits for a new read as always.
    Only the `remember` most recently used keys are kept."""
    store = Store()
    batched = Batched(store.read, remember=2)
    assert await batched.get("a") == ("a", 0)
    store.value = 1
    assert await batched.get("a", fresh=lambda result: result[1] >= 0) == ("a", 0)
    assert await batched.get("a", fresh=lambda result: result[1] >= 1) == ("a", 1)  # read again
    assert (batched.reads, batched.reused) == (2, 1)
    assert await batched.get("a", fresh=lambda result: result[1] >= 1) == ("a", 1)
    assert await batched.get("a") == ("a", 1) and batched.reads == 3  # no `fresh`: a new read
    await batched.get("b")
    await batched.get("a", fresh=lambda result: True)  # "a" used last: "b" is the oldest
    await batched.get("c")  # "b" is forgotten
    store.value = 2
    assert await batched.get("b", fresh=lambda result: True) == ("b", 2)  # read again
    assert await batched.get("c", fresh=lambda result: True) == ("c", 1)  # still kept
    assert batched.reads == 6


async def test_without_remember_nothing_is_kept() -> None:
    store = Store()
    batched = Batched(store.read)
    await batched.get("a")
    assert await batched.get("a", fresh=lambda result: True) == ("a", 0)
    assert (batched.reads, batched.reused) == (2, 0)
