"""The room event log on real Redis: sequence numbers, epochs, bounded replay, gaps, pub/sub."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from room_helpers import room_channel

from rooms.events import Lane
from rooms.keys import RoomKeys
from rooms.log import RECENT_COMMENTS, RoomLog


@pytest.fixture
def room_log(redis: aioredis.Redis, namespace: str) -> RoomLog:
    return RoomLog(redis, namespace)


async def publish_many(room_log: RoomLog, room: str, n: int) -> list[bytes]:
    events = []
    for i in range(n):
        published = await room_log.publish(
            room, "host_message", {"text": f"m{i}"}, lane=Lane.CRITICAL
        )
        events.append(published.event)
    return events


async def logged(redis: aioredis.Redis, keys: RoomKeys) -> list[bytes]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.log))
    return [fields[b"e"] for _, fields in entries]


async def test_publish_gives_consecutive_seqs_in_one_epoch(room_log: RoomLog) -> None:
    assert await room_log.position("r1") == ("", 0)
    published = [
        await room_log.publish("r1", "comment", {"i": i}, lane=Lane.LOSSY) for i in range(5)
    ]
    assert [p.seq for p in published] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in published}) == 1
    assert published[0].epoch.isdigit()
    assert await room_log.position("r1") == (published[0].epoch, 5)
    # Another room has its own sequence.
    other = await room_log.publish("r2", "comment", {}, lane=Lane.LOSSY)
    assert other.seq == 1


async def test_event_json_carries_position_time_type_lane_key_and_data(
    room_log: RoomLog, redis: aioredis.Redis
) -> None:
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    data: dict[str, Any] = {"product": {"id": 7, "title": "Mug ☕"}, "n": [1, 2]}
    published = await room_log.publish("r1", "pinned", data, lane=Lane.CRITICAL)
    event = json.loads(published.event)
    assert set(event) == {"seq", "epoch", "ts", "type", "lane", "data"}
    assert event["seq"] == published.seq == 1
    assert event["epoch"] == published.epoch
    assert event["type"] == "pinned"
    assert event["lane"] == "critical"
    assert event["data"] == data
    assert isinstance(event["ts"], int) and now_ms - 1000 <= event["ts"] <= now_ms + 1000
    # The publisher's lane and merge key, whatever the type: only state events carry a key.
    for event_type, lane, key in [
        ("stock", Lane.STATE, "stock:12"),
        ("viewers", Lane.STATE, "viewers"),
        ("purchase", Lane.LOSSY, ""),
        ("anything_new", Lane.CRITICAL, ""),
    ]:
        published = await room_log.publish("r1", event_type, {}, lane=lane, key=key)
        event = json.loads(published.event)
        assert (event["type"], event["lane"], event.get("key")) == (event_type, lane, key or None)
        fields = ["seq", "epoch", "ts", "type", "lane", *(["key"] if key else []), "data"]
        assert list(event) == fields


@pytest.mark.parametrize(
    ("event_type", "lane", "key"),
    [
        ("Nonsense", Lane.CRITICAL, ""),  # not a-z0-9_
        ('a"b', Lane.LOSSY, ""),
        ("stock\n", Lane.CRITICAL, ""),
        ("", Lane.CRITICAL, ""),
        ("stock", "urgent", ""),  # no such lane
        ("stock", Lane.STATE, ""),  # a state event needs a key
        ("stock", Lane.STATE, 'x"y'),
        ("stock", Lane.STATE, "stock:1\n"),
        ("comment", Lane.LOSSY, "c1"),  # only state events have one
        ("pinned", Lane.CRITICAL, "p"),
    ],
)
async def test_envelopes_the_gateway_could_not_obey_are_refused_and_nothing_is_logged(
    room_log: RoomLog, event_type: str, lane: Lane, key: str
) -> None:
    with pytest.raises(ValueError):
        await room_log.publish("r1", event_type, {}, lane=lane, key=key)
    assert await room_log.position("r1") == ("", 0)


async def test_non_json_data_is_refused_and_nothing_is_logged(room_log: RoomLog) -> None:
    with pytest.raises(ValueError):
        await room_log.publish(
            "r1", "stock", {"left": float("nan")}, lane=Lane.STATE, key="stock:1"
        )
    assert await room_log.position("r1") == ("", 0)


async def test_a_replayed_state_publish_keeps_its_key_and_state_change(
    room_log: RoomLog, redis: aioredis.Redis
) -> None:
    def publish(value: str) -> Any:
        return room_log.publish(
            "r1",
            "stock",
            {"remaining": value},
            lane=Lane.STATE,
            key="stock:3",
            state_op="set",
            state_field="stock",
            state_value=value,
            event_id="stock-1",
        )

    first = await publish("5")
    again = await publish("4")  # a retry of the same event: its first answer, no new change
    assert again == first and json.loads(first.event)["key"] == "stock:3"
    assert await logged(redis, room_log.keys("r1")) == [first.event]
    assert (await room_log.state("r1")).state["stock"] == "5"


async def test_snapshot_parts_are_read_with_the_state(room_log: RoomLog) -> None:
    room_log.add_snapshot_part("sale")
    room_log.add_snapshot_part("sale")  # idempotent
    room_log.add_snapshot_part("stock")
    assert room_log.snapshot_parts == ("sale", "stock")
    for taken in ("pinned", "room", "seq", "Sale", ""):
        with pytest.raises(ValueError):
            room_log.add_snapshot_part(taken)
    assert (await room_log.state("r1")).parts == {"sale": None, "stock": None}
    await room_log.publish(
        "r1",
        "sale_started",
        {},
        lane=Lane.CRITICAL,
        state_op="set",
        state_field="sale",
        state_value='{"id": 3}',
    )
    state = await room_log.state("r1")
    assert state.parts == {"sale": {"id": 3}, "stock": None}
    assert state.state["sale"] == '{"id": 3}'


async def test_read_since_replays_exactly_the_missed_events_in_order(room_log: RoomLog) -> None:
    events = await publish_many(room_log, "r1", 10)
    epoch, last = await room_log.position("r1")
    replay = await room_log.read_since("r1", epoch, 4, limit=100)
    assert not replay.gap
    assert replay.events == events[4:]
    assert [json.loads(e)["seq"] for e in replay.events] == [5, 6, 7, 8, 9, 10]
    assert (replay.epoch, replay.seq) == (epoch, last)
    # Exactly at the limit is still a replay.
    assert (await room_log.read_since("r1", epoch, 0, limit=10)).events == events
    # Up to date: nothing to replay, no gap.
    current = await room_log.read_since("r1", epoch, 10, limit=100)
    assert (current.events, current.gap, current.seq) == ([], False, 10)


async def test_a_reader_of_an_empty_log_is_up_to_date(room_log: RoomLog) -> None:
    replay = await room_log.read_since("r1", "", 0, limit=10)
    assert (replay.events, replay.gap, replay.epoch, replay.seq) == ([], False, "", 0)


@pytest.mark.parametrize(
    ("case", "since", "limit"),
    [
        ("wrong_epoch", 5, 100),
        ("since_after_last", 11, 100),
        ("negative_since", -1, 100),
        ("too_far_behind", 4, 5),
    ],
)
async def test_read_since_reports_a_gap(
    room_log: RoomLog, case: str, since: int, limit: int
) -> None:
    await publish_many(room_log, "r1", 10)
    epoch, _ = await room_log.position("r1")
    asked_epoch = "1" + epoch if case == "wrong_epoch" else epoch
    replay = await room_log.read_since("r1", asked_epoch, since, limit)
    assert replay.gap
    assert replay.events == []
    assert (replay.epoch, replay.seq) == (epoch, 10)  # where a snapshot puts the reader


async def test_a_trimmed_log_reports_a_gap(room_log: RoomLog, redis: aioredis.Redis) -> None:
    await publish_many(room_log, "r1", 10)
    epoch, _ = await room_log.position("r1")
    await redis.xtrim(room_log.keys("r1").log, minid="6-0", approximate=False)  # 1-5 gone
    assert (await room_log.read_since("r1", epoch, 3, limit=100)).gap
    assert (await room_log.read_since("r1", epoch, 4, limit=100)).gap
    still = await room_log.read_since("r1", epoch, 5, limit=100)
    assert not still.gap
    assert [json.loads(e)["seq"] for e in still.events] == [6, 7, 8, 9, 10]


async def delete_room_keys(redis: aioredis.Redis, namespace: str, room: str) -> int:
    """Simulate Redis losing a room's data: only this test's namespace is touched."""
    pattern = f"{namespace}{{room:{room}}}:*"
    assert pattern.startswith(namespace) and namespace
    keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
    return int(await redis.delete(*keys)) if keys else 0


async def test_losing_the_room_keys_starts_a_new_epoch(
    room_log: RoomLog, redis: aioredis.Redis, namespace: str
) -> None:
    await publish_many(room_log, "r1", 3)
    await publish_many(room_log, "r2", 2)
    old_epoch, _ = await room_log.position("r1")
    assert await delete_room_keys(redis, namespace, "r1") >= 3
    await asyncio.sleep(0.002)  # epochs are in microseconds; make sure the clock moved
    first = await room_log.publish("r1", "host_message", {"text": "again"}, lane=Lane.CRITICAL)
    assert first.seq == 1
    assert first.epoch != old_epoch
    replay = await room_log.read_since("r1", old_epoch, 3, limit=100)
    assert replay.gap and (replay.epoch, replay.seq) == (first.epoch, 1)
    assert await logged(redis, room_log.keys("r1")) == [first.event]
    # The other room was not touched.
    assert (await room_log.position("r2"))[1] == 2


async def test_losing_only_the_counter_starts_a_new_epoch(
    room_log: RoomLog, redis: aioredis.Redis
) -> None:
    await publish_many(room_log, "r1", 3)
    old_epoch, _ = await room_log.position("r1")
    await redis.delete(room_log.keys("r1").seq)
    await asyncio.sleep(0.002)
    published = await room_log.publish(
        "r1", "host_message", {"text": "after loss"}, lane=Lane.CRITICAL
    )
    assert (published.seq, published.epoch != old_epoch) == (1, True)
    assert await logged(redis, room_log.keys("r1")) == [published.event]


async def test_subscribers_receive_the_same_bytes_as_logged(
    room_log: RoomLog, redis_url: str, redis: aioredis.Redis
) -> None:
    async with room_channel(redis_url, room_log.keys("r1").channel) as next_message:
        published = [
            await room_log.publish("r1", "comment", {"text": f"c{i}"}, lane=Lane.LOSSY)
            for i in range(3)
        ]
        received: list[bytes] = []
        async with asyncio.timeout(5):
            while len(received) < 3:
                message = await next_message(1.0)
                if message is not None:
                    received.append(message)
        assert received == [p.event for p in published]
        assert received == await logged(redis, room_log.keys("r1"))


async def test_a_replayed_publish_returns_the_first_answer(
    room_log: RoomLog, redis_url: str, redis: aioredis.Redis
) -> None:
    async with room_channel(redis_url, room_log.keys("r1").channel) as next_message:
        first = await room_log.publish(
            "r1", "pinned", {"p": 1}, lane=Lane.CRITICAL, event_id="evt-1"
        )
        again = await room_log.publish(
            "r1", "pinned", {"p": 1}, lane=Lane.CRITICAL, event_id="evt-1"
        )
        assert again == first
        other = await room_log.publish(
            "r1", "pinned", {"p": 2}, lane=Lane.CRITICAL, event_id="evt-2"
        )
        assert other.seq == first.seq + 1
        assert await logged(redis, room_log.keys("r1")) == [first.event, other.event]
        received: list[bytes] = []
        async with asyncio.timeout(5):
            while len(received) < 2:
                message = await next_message(1.0)
                if message is not None:
                    received.append(message)
        assert received == [first.event, other.event]
        assert await next_message(0.1) is None


async def test_state_changes_and_recent_comments_travel_with_the_event(
    room_log: RoomLog,
) -> None:
    await room_log.publish(
        "r1",
        "pinned",
        {},
        lane=Lane.CRITICAL,
        state_op="set",
        state_field="pinned",
        state_value='{"id":1}',
    )
    for i in range(RECENT_COMMENTS + 5):
        await room_log.publish("r1", "comment", {"id": str(i)}, lane=Lane.LOSSY)
    state = await room_log.state("r1")
    assert state.state["pinned"] == '{"id":1}'
    assert state.seq == RECENT_COMMENTS + 6
    ids = [c["data"]["id"] for c in state.recent_comments]
    assert ids == [str(i) for i in range(5, RECENT_COMMENTS + 5)]  # the last ones, oldest first
    assert await room_log.recent_comments("r1") == state.recent_comments
    await room_log.publish(
        "r1", "unpinned", {}, lane=Lane.CRITICAL, state_op="del", state_field="pinned"
    )
    assert "pinned" not in (await room_log.state("r1")).state
