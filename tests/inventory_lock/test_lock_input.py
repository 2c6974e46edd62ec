"""Bad input is a typed rejection and leaves Redis exactly as it was, whether it is stopped in
Python or, sent past Python straight to the scripts, in Lua."""

from __future__ import annotations

from typing import Any

import pytest
from lock_helpers import hold, key_dump, new_pool

from inventory_lock import (
    InventoryLock,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
    TransitionReason,
    pool_of,
)
from inventory_lock.scripts import Client, ScriptName, Scripts

LONG = "x" * 201
LONG_UTF8 = "é" * 101  # 101 characters, 202 bytes


async def _loaded(lock: InventoryLock) -> tuple[str, str]:
    pool = new_pool()
    await lock.load(pool, 5, 2, 30)
    return pool, hold(await lock.reserve(pool, "alice", 1, "k")).id


async def test_bad_reserve_input_is_rejected_in_python(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    pool, _ = await _loaded(lock)
    bad: list[tuple[Any, Any, Any, Any]] = [
        (pool, "bob", 0, "k"),
        (pool, "bob", -1, "k"),
        (pool, "bob", 1.5, "k"),
        (pool, "bob", "1", "k"),
        (pool, "bob", True, "k"),
        (pool, "bob", None, "k"),
        (pool, "bob", 10**12, "k"),
        (pool, "", 1, "k"),
        (pool, LONG, 1, "k"),
        (pool, LONG_UTF8, 1, "k"),
        (pool, 7, 1, "k"),
        (pool, "bob", 1, ""),
        (pool, "bob", 1, LONG),
        (pool, "bob", 1, b"k"),
        (pool, "\ud800", 1, "k"),
        ("", "bob", 1, "k"),
        ("has space", "bob", 1, "k"),
        ("a{b}", "bob", 1, "k"),
        ("p" * 65, "bob", 1, "k"),
        (None, "bob", 1, "k"),
    ]
    before = await key_dump(client, namespace)
    for args in bad:
        assert await lock.reserve(*args) == Rejection(RejectReason.INVALID), args
    many = await lock.reserve_many([ReserveRequest(*args) for args in bad])
    assert many == [Rejection(RejectReason.INVALID)] * len(bad)
    unknown = new_pool()
    assert await lock.reserve(unknown, "bob", 1, "k") == Rejection(RejectReason.UNKNOWN_POOL)
    assert await key_dump(client, namespace) == before


async def test_bad_pool_and_hold_input_is_rejected(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    pool, hold_id = await _loaded(lock)
    before = await key_dump(client, namespace)
    fresh = new_pool()
    wrong_pools: list[tuple[Any, Any, Any]] = [
        (-1, 1, 30),
        (1.0, 1, 30),
        (10**10, 1, 30),
        (5, 0, 30),
        (5, True, 30),
        (5, 1, 0),
        (5, 1, 0.0001),
        (5, 1, float("nan")),
        (5, 1, float("inf")),
        (5, 1, 10**6),
        (5, 1, "30"),
    ]
    for stock, limit, seconds in wrong_pools:
        assert await lock.load(fresh, stock, limit, seconds) == PoolChange(
            fresh, False, PoolReason.INVALID
        ), (stock, limit, seconds)
    for confirmed, limit in [
        ({"a": 4}, 3),
        ({"a": 0}, 3),
        ({"a": -1}, 3),
        ({"": 1}, 3),
        ({LONG: 1}, 3),
        ({"a": 2, "b": 2, "c": 2}, 2),
    ]:
        assert await lock.rebuild(fresh, 5, confirmed, limit, 30) == PoolChange(
            fresh, False, PoolReason.INVALID
        ), confirmed
    assert (await lock.load("bad pool", 1, 1, 1)).reason is PoolReason.INVALID
    assert (await lock.close("x.y")).reason is PoolReason.INVALID
    assert (await lock.drop("")).reason is PoolReason.INVALID
    for bad_id in ["", "nodot", f"{pool}.", f"{pool}.-1", f"{pool}.1.2", "a b.1", LONG + ".1"]:
        for result in [
            await lock.begin_confirm(bad_id),
            await lock.finish_confirm(bad_id),
            await lock.abort_confirm(bad_id, release=False),
            await lock.cancel(bad_id),
        ]:
            assert (result.ok, result.reason) == (False, TransitionReason.INVALID), bad_id
        with pytest.raises(ValueError):
            pool_of(bad_id)
    assert await lock.snapshot("bad pool") is None
    assert await lock.check("bad pool") is None
    assert await lock.confirming_holds("bad pool") == []
    assert not await lock.exists("bad pool")
    assert await lock.expire_due("bad pool") is None
    with pytest.raises(ValueError):
        await lock.expire_due(pool, batch=0)
    assert await key_dump(client, namespace) == before
    assert pool_of(hold_id) == pool


async def test_bad_input_is_rejected_in_lua(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    """The scripts check their arguments themselves, for callers that are not this class."""
    pool, hold_id = await _loaded(lock)
    scripts = Scripts(client)
    keys = lock.keys(pool).all
    before = await key_dump(client, namespace)
    bad_items = [
        ["bob", "0", "k"],
        ["bob", "-1", "k"],
        ["bob", "1.5", "k"],
        ["bob", "1e3", "k"],
        ["bob", "0x10", "k"],
        ["bob", "inf", "k"],
        ["bob", "nan", "k"],
        ["bob", " 1", "k"],
        ["bob", "abc", "k"],
        ["bob", "9" * 13, "k"],
        ["", "1", "k"],
        [LONG, "1", "k"],
        ["bob", "1", ""],
        ["bob", "1", LONG_UTF8],
    ]
    invalid = [b"rejected", b"invalid"]
    for item in bad_items:  # alone, and among valid requests that are all replays
        assert await scripts.call("reserve", keys, [pool, "10", *item]) == [invalid], item
        replay = ["alice", "1", "k"]
        reply = await scripts.call("reserve", keys, [pool, "10", *replay, *item, *replay])
        assert [answer[0] for answer in reply] == [b"hold", b"rejected", b"hold"], item
        assert reply[1] == invalid and reply[0][1] == reply[2][1] == hold_id.encode()
    for whole_call in [
        [pool, "0", "bob", "1", "k"],
        [pool, "x", "bob", "1", "k"],
        ["bad pool", "10", "bob", "1", "k"],
        [pool, "10"],
        [pool, "10", "bob", "1"],
        [pool, "10", *["bob", "1", "k"] * 501],
    ]:
        assert await scripts.call("reserve", keys, whole_call) == invalid, whole_call[:5]
    transitions: list[tuple[ScriptName, list[str]]] = [
        ("begin_confirm", ["nodot"]),
        ("finish_confirm", [f"{pool}.x"]),
        ("cancel", [""]),
        ("abort_confirm", [hold_id, "2"]),
        ("abort_confirm", [hold_id, "true"]),
    ]
    for name, args in transitions:
        assert (await scripts.call(name, keys, args))[:2] == [0, b"invalid"], (name, args)
    fresh = lock.keys(new_pool()).all
    pools: list[tuple[ScriptName, list[str]]] = [
        ("load", ["p", "-1", "1", "1000"]),
        ("load", ["p", "5", "0", "1000"]),
        ("load", ["p", "5", "1", "0"]),
        ("load", ["p", "5", "1", "86400001"]),
        ("load", ["bad pool", "5", "1", "1000"]),
        ("load", ["p", "5", "3", "1000", "a", "4"]),
        ("load", ["p", "5", "3", "1000", "a", "3", "b", "3"]),
        ("load", ["p", "5", "3", "1000", "a", "1", "a", "1"]),
        ("load", ["p", "5", "3", "1000", "a"]),
    ]
    for name, args in pools:
        assert await scripts.call(name, fresh, args) == [0, b"invalid"], (name, args)
    assert await scripts.call("expire_due", keys, ["0"]) is None
    assert await key_dump(client, namespace) == before
