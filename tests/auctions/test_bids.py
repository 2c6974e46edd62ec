"""Bids through the service on real Redis and PostgreSQL: the minimum, increment bands, proxy
bidding, replays, the snipe window, the reserve, the room's events and the bid list."""

from __future__ import annotations

import json

import pytest
from auction_kit import HOST, ROOM, Kit, kit, viewer

from flash_sales.auctions.announcements import direct_channel
from rooms.actors import Actor, Role
from rooms.errors import Conflict, Forbidden

__all__ = ["kit"]


async def test_first_bid_at_the_start_then_price_plus_increment(kit: Kit) -> None:
    auction = await kit.open(start_cents=500, increment_cents=50)
    with pytest.raises(Conflict) as low:
        await kit.bid(auction, "ann", 499)
    assert low.value.code == "too_low"
    first = await kit.bid(auction, "ann", 500)
    assert first["accepted"] and first["leading"] and first["price_cents"] == 500
    assert first["min_next_cents"] == 550
    with pytest.raises(Conflict) as again:
        await kit.bid(auction, "bob", 549)
    assert again.value.code == "too_low"
    second = await kit.bid(auction, "bob", 550)
    assert second["leading"] and second["price_cents"] == 550


async def test_increment_bands(kit: Kit) -> None:
    auction = await kit.open(
        start_cents=900, increment_cents=None, increments=[[0, 100], [1000, 500]]
    )
    assert (await kit.bid(auction, "ann", 900))["min_next_cents"] == 1000
    assert (await kit.bid(auction, "bob", 1000))["min_next_cents"] == 1500
    with pytest.raises(Conflict):
        await kit.bid(auction, "ann", 1499)


async def test_proxy_bidding_raises_the_leader_one_step_and_hides_the_max(kit: Kit) -> None:
    auction = await kit.open(start_cents=100, increment_cents=10)
    ann = await kit.bid(auction, "ann", 100, max_cents=300)
    assert ann["price_cents"] == 100 and ann["leading"]
    bob = await kit.bid(auction, "bob", 150)
    assert not bob["leading"] and bob["price_cents"] == 160  # ann's proxy: 150 + 10
    view = await kit.service.lifecycle.view(auction)
    assert "300" not in str(view) and view["price_cents"] == 160
    took = await kit.bid(auction, "bob", 200, max_cents=1000)
    assert took["leading"] and took["price_cents"] == 310  # ann's max + one step
    bids = (await kit.service.lifecycle.bids(auction, HOST))["bids"]
    assert [(b["bidder"], b["amount_cents"], b["proxy"]) for b in bids] == [
        ("ann", 100, False),
        ("bob", 150, False),
        ("ann", 160, True),
        ("ann", 300, True),
        ("bob", 310, True),
    ]
    assert [b["seq"] for b in bids] == [1, 2, 3, 4, 5]
    assert took["seqs"] == [4, 5]


async def test_a_tie_of_maxima_keeps_the_earlier_leader(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100, max_cents=500)
    bob = await kit.bid(auction, "bob", 500)
    assert not bob["leading"] and bob["price_cents"] == 500


async def test_own_bid_and_raising_ones_max(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100, max_cents=200)
    with pytest.raises(Conflict) as own:
        await kit.bid(auction, "ann", 150)
    assert own.value.code == "own_bid"
    raised = await kit.bid(auction, "ann", 150, max_cents=900)
    assert raised["leading"] and raised["price_cents"] == 100 and raised["seqs"] == []
    bob = await kit.bid(auction, "bob", 500)
    assert not bob["leading"] and bob["price_cents"] == 510


async def test_a_replay_answers_the_first_call_and_logs_nothing(kit: Kit) -> None:
    auction = await kit.open()
    first = await kit.bid(auction, "ann", 100, key="k1")
    await kit.bid(auction, "bob", 200, key="k1")  # another bidder's key is another key
    again = await kit.bid(auction, "ann", 100, key="k1")
    assert again == first
    changed = await kit.bid(auction, "ann", 900, key="k1")  # the key decides, not the amount
    assert changed == first
    assert len((await kit.service.lifecycle.bids(auction, HOST))["bids"]) == 2


async def test_a_bid_in_the_snipe_window_extends_up_to_the_cap(kit: Kit) -> None:
    auction = await kit.open(duration_s=30, snipe_window_s=20, max_extensions=2)
    first = await kit.bid(auction, "ann", 100)
    assert first["extensions"] == 0  # 30 s left: outside the window
    await kit.move_deadline(auction, -15_000)  # 15 s left
    now = await kit.server_ms()
    second = await kit.bid(auction, "bob", 110)
    assert second["extensions"] == 1 and now + 20_000 <= second["ends_at"] <= now + 21_000
    await kit.move_deadline(auction, -5_000)  # 15 s left, within the window again
    third = await kit.bid(auction, "ann", 120)
    assert third["extensions"] == 2
    await kit.move_deadline(auction, -5_000)
    fourth = await kit.bid(auction, "bob", 130)  # capped
    assert fourth["extensions"] == 2 and fourth["ends_at"] == third["ends_at"] - 5_000
    extended = await kit.events("auction_extended")
    assert [e["data"]["extensions"] for e in extended] == [1, 2]
    assert all(e["lane"] == "critical" for e in extended)


async def test_sudden_death_never_extends(kit: Kit) -> None:
    auction = await kit.open(duration_s=30, snipe_window_s=0, max_extensions=5)
    await kit.move_deadline(auction, -29_000)
    answer = await kit.bid(auction, "ann", 100)
    assert answer["extensions"] == 0


async def test_the_reserve_is_hidden_and_a_max_above_it_lifts_the_price(kit: Kit) -> None:
    auction = await kit.open(reserve_cents=1000)
    low = await kit.bid(auction, "ann", 100)
    view = await kit.service.lifecycle.view(auction)
    assert low["price_cents"] == 100 and not view["reserve_met"] and "reserve_cents" not in view
    lifted = await kit.bid(auction, "bob", 200, max_cents=5000)
    assert lifted["leading"] and lifted["price_cents"] == 1000
    assert (await kit.service.lifecycle.view(auction))["reserve_met"]


async def test_the_leader_lifting_the_price_to_the_reserve_in_the_window_does_not_extend(
    kit: Kit,
) -> None:
    auction = await kit.open(duration_s=30, snipe_window_s=20, reserve_cents=400)
    await kit.bid(auction, "ann", 100)
    await kit.move_deadline(auction, -15_000)  # 15 s left: within the window
    lifted = await kit.bid(auction, "ann", 410)  # the leader's own maximum, past the reserve
    assert lifted["leading"] and lifted["price_cents"] == 400
    assert lifted["extensions"] == 0  # nobody was answered: the leader cannot keep it going


async def test_events_say_the_lane_and_the_leader_only_when_allowed(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.bid(auction, "bob", 110, show_name=True)
    started = await kit.events("auction_started")
    assert started[0]["lane"] == "critical" and started[0]["data"]["auction"]["id"] == auction
    states = await kit.events("auction")
    assert [e["key"] for e in states] == [f"auction:{auction}"] * 2
    assert [e["lane"] for e in states] == ["state", "state"]
    assert [e["data"]["leader"] for e in states] == [None, "Bob"]
    await kit.service.lifecycle.stop(auction, HOST)
    ended = await kit.events("auction_ended")
    assert ended[0]["lane"] == "critical"
    assert ended[0]["data"]["price_cents"] == 110 and ended[0]["data"]["winner"] == "Bob"
    snapshot = await kit.room_log.state(ROOM)
    assert snapshot.parts["auction"]["state"] == "ended"


async def test_the_bidder_who_lost_the_lead_is_told_directly(kit: Kit, on_cluster: bool) -> None:
    if on_cluster:
        pytest.skip("reads the direct channel with a plain subscription")
    auction = await kit.open()
    pubsub = kit.redis.pubsub()
    await pubsub.subscribe(direct_channel(kit.room_log, ROOM))
    try:
        await kit.bid(auction, "ann", 100)
        await kit.bid(auction, "bob", 120)
        message = None
        for _ in range(100):  # the subscribe confirmation first, then ours
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                break
        assert message is not None
        direct = json.loads(message["data"])
        assert direct["to"] == "ann" and direct["type"] == "outbid"
        assert direct["data"] == {
            "auction_id": auction,
            "price_cents": 120,
            "min_next_cents": 130,
            "ends_at": direct["data"]["ends_at"],
        }
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_long_display_name_is_cut(kit: Kit) -> None:
    auction = await kit.open()
    long = Actor("ann", Role.VIEWER, ROOM, "Ä" * 150)  # 300 bytes
    await kit.service.bidding.bid(auction, long, 100, None, "k", show_name=True)
    assert (await kit.service.lifecycle.view(auction))["leader"] == "Ä" * 100


async def test_the_bid_list_is_for_hosts_and_moderators(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    with pytest.raises(Forbidden):
        await kit.service.lifecycle.bids(auction, viewer("ann"))
    moderator = Actor("mod", Role.MODERATOR, ROOM)
    bids = (await kit.service.lifecycle.bids(auction, moderator))["bids"]
    assert bids[0]["bidder"] == "ann" and bids[0]["accepted_at"] > 0
