"""Bad input and bids that may not be: each is a typed refusal, and nothing changes (the live
auction in Redis, its log, the record in PostgreSQL, the room's events)."""

from __future__ import annotations

from typing import Any

import pytest
from auction_kit import HOST, ROOM, Kit, kit, viewer

from flash_sales.auctions.book import Live
from rooms.actors import Actor, Role
from rooms.errors import Conflict, Forbidden, Invalid, NotFound, Refusal

__all__ = ["kit"]


async def _state(kit: Kit, auction: int) -> tuple[Live, int, int]:
    live = await kit.service.book.peek(auction)
    logged = await kit.redis.llen(kit.service.book.keys(auction).log)
    events = len(await kit.events("auction", "auction_extended", "auction_ended"))
    return live, logged, events


@pytest.mark.parametrize(
    ("amount", "max_cents", "code"),
    [
        (99, None, "too_low"),  # the start is 100 and the price 100: below the minimum 110
        (105, None, "too_low"),
        ("200", None, "invalid"),
        (200.0, None, "invalid"),
        (True, None, "invalid"),
        (None, None, "invalid"),
        (0, None, "invalid"),
        (-500, None, "invalid"),
        (10**12, None, "invalid"),
        (2**70, None, "invalid"),
        (200, 150, "invalid"),  # max below the bid
        (200, "900", "invalid"),
        (200, 10**12, "invalid"),
    ],
)
async def test_bad_amounts(kit: Kit, amount: object, max_cents: object, code: str) -> None:
    auction = await kit.open(duration_s=30, snipe_window_s=60, max_extensions=3)
    await kit.bid(auction, "ann", 100)
    before = await _state(kit, auction)
    with pytest.raises(Refusal) as refused:
        await kit.bid(auction, "bob", amount, max_cents)
    assert refused.value.code == code
    assert isinstance(refused.value, Conflict if code == "too_low" else Invalid)
    assert await _state(kit, auction) == before


@pytest.mark.parametrize("key", ["", "k" * 129])
async def test_bad_idempotency_keys(kit: Kit, key: str) -> None:
    auction = await kit.open()
    with pytest.raises(Invalid):
        await kit.service.bidding.bid(auction, viewer("ann"), 100, None, key)
    assert (await kit.service.book.peek(auction)).bids == 0


@pytest.mark.parametrize("role", [Role.HOST, Role.MODERATOR])
async def test_staff_cannot_bid(kit: Kit, role: Role) -> None:
    auction = await kit.open()
    with pytest.raises(Forbidden):
        await kit.service.bidding.bid(auction, Actor("staff", role, ROOM), 100, None, "k")
    assert (await kit.service.book.peek(auction)).bids == 0


async def test_a_token_of_another_room_cannot_bid(kit: Kit) -> None:
    auction = await kit.open()
    with pytest.raises(Forbidden):
        await kit.service.bidding.bid(auction, Actor("ann", Role.VIEWER, "other"), 100, None, "k")


async def test_unknown_scheduled_and_ended_auctions(kit: Kit) -> None:
    with pytest.raises(NotFound):
        await kit.bid(987654, "ann", 100)
    scheduled = await kit.create()
    with pytest.raises(Conflict) as not_open:
        await kit.bid(scheduled, "ann", 100)
    assert not_open.value.code == "not_open"
    ended = await kit.open()
    await kit.bid(ended, "ann", 100)
    await kit.service.lifecycle.stop(ended, HOST)
    before = await _state(kit, ended)
    with pytest.raises(Conflict) as closed:
        await kit.bid(ended, "bob", 5000)
    assert closed.value.code == "ended"
    assert await _state(kit, ended) == before
    with pytest.raises(Conflict) as restart:
        await kit.service.lifecycle.start(ended, HOST)
    assert restart.value.code == "ended"


async def test_a_bid_past_the_deadline_is_refused_before_the_loop_ends_it(kit: Kit) -> None:
    auction = await kit.open(duration_s=30, snipe_window_s=10, max_extensions=5)
    await kit.bid(auction, "ann", 100)
    await kit.move_deadline(auction, -31_000)  # past, by the server's clock
    before = await _state(kit, auction)
    with pytest.raises(Conflict) as late:
        await kit.bid(auction, "bob", 500)
    assert late.value.code == "ended"
    assert await _state(kit, auction) == before


BAD_CONFIGS: list[dict[str, Any]] = [
    {"start_cents": None},
    {"duration_s": None},
    {"start_cents": 0},
    {"start_cents": 1.5},
    {"start_cents": 10**9},
    {"increment_cents": 0},
    {"increment_cents": 10, "increments": [[0, 10]]},
    {"increment_cents": None},
    {"increment_cents": None, "increments": [[100, 10]]},
    {"increment_cents": None, "increments": [[0, 10], [0, 20]]},
    {"increment_cents": None, "increments": [[0, 10, 3]]},
    {"increment_cents": None, "increments": "0:10"},
    {"duration_s": 0},
    {"duration_s": float("nan")},
    {"duration_s": 10**9},
    {"snipe_window_s": -1},
    {"max_extensions": -1},
    {"max_extensions": 1.0},
    {"reserve_cents": 0},
]


@pytest.mark.parametrize("config", BAD_CONFIGS)
async def test_bad_configurations(kit: Kit, config: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        await kit.create(**config)
    assert await kit.pg.fetchval("SELECT count(*) FROM auctions") == 0


async def test_only_the_host_creates_starts_and_stops(kit: Kit) -> None:
    with pytest.raises(Forbidden):
        await kit.service.lifecycle.create(
            ROOM, viewer("ann"), kit.product_id, start_cents=100, increment_cents=10, duration_s=9
        )
    auction = await kit.create()
    for act in (kit.service.lifecycle.start, kit.service.lifecycle.stop):
        with pytest.raises(Forbidden):
            await act(auction, Actor("mod", Role.MODERATOR, ROOM))
    with pytest.raises(NotFound):
        await kit.service.lifecycle.create(
            ROOM, HOST, 424242, start_cents=100, increment_cents=10, duration_s=9
        )
