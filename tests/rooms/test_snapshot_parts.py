"""The room snapshot's extension point: a part another package registers on the room log is a
field of the room's live state it sets with its own events, shown in every snapshot under its
name (null while unset) without rooms naming it."""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from room_helpers import pg_pool, room_service

from live.settings import Settings
from rooms.events import Lane
from rooms.log import StateOp


async def test_a_registered_part_shows_in_the_snapshot_as_its_owner_last_set_it(
    redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    async with pg_pool(settings.database_url, db_schema) as pg:
        plain = room_service(pg, redis, settings.redis_prefix)
        extended = room_service(pg, redis, settings.redis_prefix)
    extended.log.add_snapshot_part("deal")
    room = {"id": "r1", "title": "R", "host": "h", "settings": {}, "ended": False}
    await plain.log.publish(
        "r1",
        "room_updated",
        {"room": room},
        lane=Lane.CRITICAL,
        state_op="set",
        state_field="room",
        state_value=json.dumps(room),
    )  # the room is in its live state: the snapshots below never ask PostgreSQL (pool closed)
    assert "deal" not in await plain.snapshot("r1")  # only where its owner registered it
    assert (await extended.snapshot("r1"))["deal"] is None

    async def deal(op: StateOp, value: str = "") -> None:
        await extended.log.publish(
            "r1", "deal", {}, lane=Lane.CRITICAL, state_op=op, state_field="deal", state_value=value
        )

    await deal("set", json.dumps({"id": 9, "left": 3}))
    snapshot = await extended.snapshot("r1")
    assert snapshot["deal"] == {"id": 9, "left": 3} and snapshot["seq"] == 2
    assert snapshot["room"]["title"] == "R" and snapshot["pinned"] is None
    await deal("del")
    assert (await extended.snapshot("r1"))["deal"] is None
