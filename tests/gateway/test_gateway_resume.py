"""Resume: a viewer reconnecting with since/epoch gets exactly what it missed from the log, or a
snapshot when the log cannot tell (other epoch, too far behind, garbage)."""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from gateway_testkit import Viewer, make_room, serve, ws_url

from gateway.hub import replay_frame
from live.settings import Settings
from rooms.log import RoomLog


async def test_resume_replays_only_what_was_missed(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        log = RoomLog(redis, settings.redis_prefix)
        first = await Viewer.open(ws_url(served.url, room.id))
        assert first.welcome is not None and first.welcome["resumed"] is False
        assert first.snapshots == 1
        epoch, since = first.epoch, first.seq
        await first.close()

        missed = [
            (await room.pin(room.products[0]))["seq"],
            (
                await log.publish(
                    room.id, "host_message", {"text": "hi", "by": "h", "role": "host"}
                )
            ).seq,
            (await log.publish(room.id, "comment", {"id": "c1", "user": "u", "text": "x"})).seq,
            (await room.pin(room.products[1]))["seq"],
        ]
        back = await Viewer.open(
            ws_url(served.url, room.id, since=since, epoch=epoch), resume=(epoch, since)
        )
        await back.wait_for(lambda: back.seq == missed[-1])
        assert back.welcome == {
            "type": "welcome",
            "resumed": True,
            "epoch": epoch,
            "seq": missed[-1],
            "user": None,
        }
        assert back.snapshots == 0
        assert [e["seq"] for e in back.applied] == missed
        assert back.applied_types() == ["pinned", "host_message", "comment", "pinned"]
        assert back.applied[0]["data"]["product"]["id"] == room.products[0]
        assert back.stale == 0 and back.disorder == 0

        # Live events keep flowing after the replay, each once.
        live = (await room.pin(room.products[0]))["seq"]
        await back.wait_for(lambda: back.seq == live)
        assert [e["seq"] for e in back.applied] == [*missed, live]
        await back.close()

        # Nothing missed: a welcome and no events frame.
        current = await Viewer.open(
            ws_url(served.url, room.id, since=live, epoch=epoch), resume=(epoch, live)
        )
        assert current.welcome is not None and current.welcome["resumed"] is True
        await current.send({"type": "ping", "ref": "p"})
        await current.reply("p")
        assert current.applied == [] and current.snapshots == 0
        await current.close()


async def test_resume_with_another_epoch_or_garbage_gets_a_snapshot(settings: Settings) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        pinned = await room.pin()
        epoch, seq = pinned["epoch"], pinned["seq"]
        for params in (
            {"since": 1, "epoch": "1700000000000000"},  # another epoch
            {"since": seq + 5, "epoch": epoch},  # ahead of the log
            {"since": "abc", "epoch": epoch},
            {"since": "-1", "epoch": epoch},
            {"since": "1e3", "epoch": epoch},
            {"since": "9" * 40, "epoch": epoch},
            {"since": 1, "epoch": ""},
            {"since": 1},
            {"epoch": epoch},
            {"since": 1, "epoch": "x" * 3000},
            {"since": "", "epoch": "%00"},
        ):
            viewer = await Viewer.open(ws_url(served.url, room.id, **params))
            await viewer.wait_for(lambda v=viewer: v.snapshots == 1)  # type: ignore[misc]
            assert viewer.welcome is not None, params
            assert viewer.welcome["resumed"] is False, params
            assert (viewer.epoch, viewer.seq) == (epoch, seq), params
            await viewer.send({"type": "ping", "ref": "up"})
            assert (await viewer.reply("up"))["type"] == "reply"  # the connection stays up
            snapshot_pin = viewer.applied == []
            assert snapshot_pin, params
            await viewer.close()


async def test_resume_too_far_behind_gets_a_snapshot(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with serve(settings, replay_limit=10) as served:
        room = await make_room(served.url, settings)
        first = await Viewer.open(ws_url(served.url, room.id))
        epoch, since = first.epoch, first.seq
        await first.close()
        log = RoomLog(redis, settings.redis_prefix)
        for n in range(11):
            await log.publish(room.id, "host_message", {"text": f"m{n}", "by": "h", "role": "host"})
        back = await Viewer.open(ws_url(served.url, room.id, since=since, epoch=epoch))
        await back.wait_for(lambda: back.snapshots == 1)
        assert back.welcome is not None and back.welcome["resumed"] is False
        assert back.seq == since + 11 and back.applied == []
        await back.close()
        near = await Viewer.open(
            ws_url(served.url, room.id, since=since + 1, epoch=epoch), resume=(epoch, since + 1)
        )
        await near.wait_for(lambda: near.seq == since + 11)
        assert near.snapshots == 0 and len(near.applied) == 10
        await near.close()


def test_replay_frame_keeps_lanes_rules() -> None:
    def event(seq: int, kind: str, lane: str, **data: object) -> bytes:
        body = {"seq": seq, "epoch": "e", "ts": 1, "type": kind, "lane": lane, "data": data}
        return json.dumps(body).encode()

    events = [
        event(1, "pinned", "critical"),
        event(2, "stock", "state", sale_id=1, remaining=9),
        event(3, "comment", "lossy", text="a"),
        event(4, "stock", "state", sale_id=2, remaining=5),
        event(5, "comment", "lossy", text="b"),
        event(6, "stock", "state", sale_id=1, remaining=8),
        event(7, "comment", "lossy", text="c"),
        event(8, "sale_ended", "critical"),
    ]
    frame = json.loads(replay_frame(events, lossy_cap=2))
    assert frame["type"] == "events" and frame["skipped"] == 1
    assert [e["seq"] for e in frame["events"]] == [1, 4, 5, 6, 7, 8]
