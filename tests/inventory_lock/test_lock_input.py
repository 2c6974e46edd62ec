"""Bad input is a typed rejection and leaves Redis exactly as it was, whether it is stopped in
Python or, sent past Python straight to the scripts, in Lua."""

from __future__ import annotations

from typing import Any

import pytest
from lock_helpers import hold, key_dump, new_pool

from inventory_lock import (
    InventoryLock,
    OrderFact,
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
NONCE = "0123456789abcdef"
BAD_NONCES = ["", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "0123456789abcdeg"]
BAD_HOLD_IDS = [
    "",
    "nodot",
    "a b.1",
    LONG + ".1",
    "p.1x",
    "p.1-",
    f"p.-{NONCE}",
    f"p.1{NONCE}",
    f"p.1_{NONCE}",
    f"p.{'1' * 19}-{NONCE}",
    *(f"p.1-{nonce}" for nonce in BAD_NONCES[1:]),
]
# Repair tokens are text like buyer ids; leases are seconds like hold times.
BAD_TOKENS: list[Any] = ["", LONG, LONG_UTF8, "\ud800", None, b"tok", 7]
BAD_LEASES: list[Any] = [0, 0.0001, -1, float("nan"), float("inf"), 10**6, "60", True, None]


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
    for stock, limit, seconds in wrong_pools:  # fence makes a missing pool: the same checks
        for target in (fresh, pool):
            assert await lock.fence(target, stock, limit, seconds, "tok", 60) == PoolChange(
                target, False, PoolReason.INVALID
            ), (target, stock, limit, seconds)
    for token, lease in [
        *((token, 60) for token in BAD_TOKENS),
        *(("tok", lease) for lease in BAD_LEASES),
    ]:
        for target in (fresh, pool):
            assert await lock.fence(target, 5, 1, 30, token, lease) == PoolChange(
                target, False, PoolReason.INVALID
            ), (target, token, lease)
    for token in BAD_TOKENS:
        assert await lock.unfence(pool, token) == PoolChange(pool, False, PoolReason.INVALID)
    assert (await lock.load("bad pool", 1, 1, 1)).reason is PoolReason.INVALID
    assert (await lock.fence("bad pool", 1, 1, 1, "tok", 60)).reason is PoolReason.INVALID
    assert (await lock.unfence("x.y", "tok")).reason is PoolReason.INVALID
    assert (await lock.close("x.y")).reason is PoolReason.INVALID
    assert (await lock.drop("")).reason is PoolReason.INVALID
    for bad_id in [*BAD_HOLD_IDS, f"{pool}.", f"{pool}.-1", f"{pool}.1.2", f"{pool}.1-{NONCE}-"]:
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
        assert await scripts.call("reserve", keys, [pool, "10", NONCE, *item]) == [invalid], item
        replay = ["alice", "1", "k"]
        reply = await scripts.call("reserve", keys, [pool, "10", NONCE, *replay, *item, *replay])
        assert [answer[0] for answer in reply] == [b"hold", b"rejected", b"hold"], item
        assert reply[1] == invalid and reply[0][1] == reply[2][1] == hold_id.encode()
    for whole_call in [
        [pool, "0", NONCE, "bob", "1", "k"],
        [pool, "x", NONCE, "bob", "1", "k"],
        ["bad pool", "10", NONCE, "bob", "1", "k"],
        [pool, "10", NONCE],
        [pool, "10", NONCE, "bob", "1"],
        [pool, "10", NONCE, *["bob", "1", "k"] * 501],
        [pool, "10", "bob", "1", "k"],  # no nonce (as before ids had one)
        *([pool, "10", nonce, "bob", "1", "k"] for nonce in BAD_NONCES),
    ]:
        assert await scripts.call("reserve", keys, whole_call) == invalid, whole_call[:5]
    transitions: list[tuple[ScriptName, list[str]]] = [
        ("begin_confirm", ["nodot"]),
        ("finish_confirm", [f"{pool}.x"]),
        ("cancel", [""]),
        ("abort_confirm", [hold_id, "2"]),
        ("abort_confirm", [hold_id, "true"]),
        *(
            (name, [bad_id])
            for name in ("begin_confirm", "finish_confirm", "cancel")
            for bad_id in BAD_HOLD_IDS
        ),
    ]
    for name, args in transitions:
        assert (await scripts.call(name, keys, args))[:2] == [0, b"invalid"], (name, args)
    fresh = lock.keys(new_pool()).all
    wrong_figures = [
        ["p", "-1", "1", "1000"],
        ["p", "5", "0", "1000"],
        ["p", "5", "1", "0"],
        ["p", "5", "1", "86400001"],
        ["p", "5", "1", "1e3"],
        ["bad pool", "5", "1", "1000"],
    ]
    fine = ["p", "5", "1", "1000"]
    pools: list[tuple[ScriptName, list[str]]] = [
        *(("load", args) for args in wrong_figures),
        ("load", ["p", "5", "1"]),
        ("load", [*fine, "a", "1"]),  # load took confirmed pairs once: no more
        ("load", [*fine, "x"]),
        ("load", [*fine, "tok", "60000"]),  # a fence's arguments
        *(("fence", [*args, "tok", "60000"]) for args in wrong_figures),
        ("fence", fine),
        ("fence", [*fine, "tok"]),
        ("fence", [*fine, "tok", "60000", "x"]),
        *(("fence", [*fine, token, "60000"]) for token in ["", LONG, LONG_UTF8]),
        *(
            ("fence", [*fine, "tok", lease])
            for lease in ["0", "-1", "1.5", "1e3", "0x10", " 1", "86400001", "9" * 13]
        ),
    ]
    for name, args in pools:
        for target in (fresh, keys):
            assert await scripts.call(name, target, args) == [0, b"invalid"], (name, args)
    good = [hold_id, "alice", "1"]
    other_pool = f"{new_pool()}.1-0123456789abcdef"
    for facts in [
        [hold_id, "alice"],
        [*good, hold_id],
        [*good, *good],  # one id given twice
        [other_pool, "alice", "1"],
        [hold_id, "", "1"],
        [hold_id, LONG, "1"],
        *([hold_id, "alice", qty] for qty in ["0", "-1", "1.5", "1e3", "9" * 13, "1000000001"]),
        *([bad_id, "alice", "1"] for bad_id in BAD_HOLD_IDS),
    ]:  # alone and after a good fact: all are checked before any is written
        for args in (facts, [*good, *facts]):
            assert await scripts.call("adopt", keys, [pool, *args]) == invalid, args
    assert await scripts.call("adopt", keys, ["bad pool", *good]) == invalid
    assert await scripts.call("adopt", keys, good) == invalid  # no pool first
    assert await scripts.call("adopt", fresh, [pool, *good]) == [b"rejected", b"unknown_pool"]
    assert await scripts.call("unfence", fresh, ["tok"]) == [0, b"unknown_pool"]
    assert await scripts.call("unfence", fresh, []) == [0, b"invalid"]
    for args in [[], [""], [LONG], ["tok"], ["tok", "x"]]:  # the pool is not fenced
        assert (await scripts.call("unfence", keys, args))[0] == 0, args
    assert await scripts.call("expire_due", keys, ["0"]) is None
    assert await key_dump(client, namespace) == before


async def test_bad_adopt_input_is_rejected_in_python(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    """One bad order refuses the whole adopt before anything is sent; so does a bad pool."""
    pool, hold_id = await _loaded(lock)
    other_pool, other_id = await _loaded(lock)
    before = await key_dump(client, namespace)
    good = OrderFact(hold_id, "alice", 1)
    bad: list[tuple[Any, Any, Any]] = [
        (other_id, "alice", 1),  # a hold of another pool
        (f"{other_pool}.7-{NONCE}", "alice", 1),
        *((bad_id, "alice", 1) for bad_id in BAD_HOLD_IDS),
        (None, "alice", 1),
        (hold_id, "", 1),
        (hold_id, LONG, 1),
        (hold_id, LONG_UTF8, 1),
        (hold_id, None, 1),
        (hold_id, b"alice", 1),
        (hold_id, "alice", 0),
        (hold_id, "alice", -1),
        (hold_id, "alice", 1.0),
        (hold_id, "alice", True),
        (hold_id, "alice", "1"),
        (hold_id, "alice", 10**10),
    ]
    conflicting = [good, OrderFact(hold_id, "bob", 1)]  # one id, two orders
    assert await lock.adopt(pool, conflicting) == PoolChange(pool, False, PoolReason.INVALID)
    for fact in bad:
        for orders in ([OrderFact(*fact)], [good, OrderFact(*fact)]):
            assert await lock.adopt(pool, orders) == PoolChange(pool, False, PoolReason.INVALID), (
                fact
            )
    for bad_pool in ["", "bad pool", "p" * 65, "a{b}", "x.y"]:
        assert await lock.adopt(bad_pool, []) == PoolChange(bad_pool, False, PoolReason.INVALID)
    unknown = new_pool()
    assert await lock.adopt(unknown, [OrderFact(f"{unknown}.1-{NONCE}", "a", 1)]) == PoolChange(
        unknown, False, PoolReason.UNKNOWN_POOL
    )
    assert await lock.adopt(unknown, []) == PoolChange(unknown, False, PoolReason.UNKNOWN_POOL)
    assert await lock.unfence(unknown, "tok") == PoolChange(unknown, False, PoolReason.UNKNOWN_POOL)
    assert await key_dump(client, namespace) == before
