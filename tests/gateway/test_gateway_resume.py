"""Resume: a viewer reconnecting with since/epoch gets exactly what it missed from the log, or a
snapshot when the log cannot tell (other epoch, too far behind, garbage)."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from gateway_testkit import Viewer, make_room, serve, ws_url

from gateway.hub import replay_frame
from live.settings import Settings
from rooms.events import Lane
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
                    room.id,
                    "host_message",
                    {"text": "hi", "by": "h", "role": "host"},
                    lane=Lane.CRITICAL,
                )
            ).seq,
            (
                await log.publish(
                    room.id, "comment", {"id": "c1", "user": "u", "text": "x"}, lane=Lane.LOSSY
                )
            ).seq,
            (await room.pin(room.products[1]))["seq"],
        ]
        back = await Viewer.open(
            ws_url(served.url, room.id, since=since, epoch=epoch), resume=(epoch, since)
        )
        await back.wait_for(lambda: back.seq >= missed[-1])
        assert back.welcome is not None
        assert back.welcome["resumed"] is True and back.welcome["epoch"] == epoch
        assert back.welcome["seq"] >= missed[-1] and back.welcome["user"] is None
        assert back.snapshots == 0
        assert [e["seq"] for e in back.applied] == missed
        assert back.applied_types() == ["pinned", "host_message", "comment", "pinned"]
        assert back.applied[0]["data"]["product"]["id"] == room.products[0]
        assert back.stale == 0 and back.disorder == 0

        # Live events keep flowing after the replay, each once.
        live = (await room.pin(room.products[0]))["seq"]
        await back.wait_for(lambda: back.seq >= live)
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
            {"since": "\u00b2", "epoch": epoch},  # a digit to isdigit(), not to int()
            {"since": "\u0661", "epoch": epoch},  # an Arabic-Indic one
        ):
            viewer = await Viewer.open(ws_url(served.url, room.id, **params))
            await viewer.wait_for(lambda v=viewer: v.snapshots == 1)  # type: ignore[misc]
            assert viewer.welcome is not None, params
            assert viewer.welcome["resumed"] is False, params
            assert viewer.epoch == epoch and viewer.snapshot_seq >= seq, params
            await viewer.send({"type": "ping", "ref": "up"})
            assert (await viewer.reply("up"))["type"] == "reply"  # the connection stays up
            assert viewer.applied == [], params  # the pin came in the snapshot, not replayed
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
        messages = []
        for n in range(11):
            message = {"text": f"m{n}", "by": "h", "role": "host"}
            messages.append(
                (await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)).seq
            )
        epoch, last = await log.position(room.id)
        assert last - since > 10
        back = await Viewer.open(ws_url(served.url, room.id, since=since, epoch=epoch))
        await back.wait_for(lambda: back.snapshots == 1)
        assert back.welcome is not None and back.welcome["resumed"] is False
        assert back.snapshot_seq >= last and back.critical() == []
        await back.close()
        near = await Viewer.open(
            ws_url(served.url, room.id, since=last - 10, epoch=epoch), resume=(epoch, last - 10)
        )
        await near.wait_for(lambda: near.seq >= messages[-1])
        assert near.snapshots == 0 and near.welcome is not None and near.welcome["resumed"]
        assert [e["seq"] for e in near.critical()] == [s for s in messages if s > last - 10]
        await near.close()


def test_replay_frame_keeps_lanes_rules() -> None:
    def event(seq: int, kind: str, lane: str, key: str = "", **data: object) -> bytes:
        body = {"seq": seq, "epoch": "e", "ts": 1, "type": kind, "lane": lane, "data": data}
        return json.dumps({**body, "key": key} if key else body).encode()

    events = [
        event(1, "pinned", "critical"),
        event(2, "stock", "state", "stock:1", sale_id=1, remaining=9),
        event(3, "comment", "lossy", text="a"),
        event(4, "stock", "state", "stock:2", sale_id=2, remaining=5),
        event(5, "comment", "lossy", text="b"),
        event(6, "stock", "state", "stock:1", sale_id=1, remaining=8),
        event(7, "comment", "lossy", text="c"),
        event(8, "sale_ended", "critical"),
    ]
    frame = json.loads(replay_frame(events, lossy_cap=2))
    assert frame["type"] == "events" and frame["skipped"] == 1
    assert [e["seq"] for e in frame["events"]] == [1, 4, 5, 6, 7, 8]


async def test_joining_and_resuming_while_events_flow_gets_each_event_once(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """Viewers whose snapshot or replay overlaps a frame in flight get no event twice and miss
    none after their starting point."""
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        log = RoomLog(redis, settings.redis_prefix)
        epoch, start = await log.position(room.id)
        published: list[int] = []
        done = asyncio.Event()

        async def host() -> None:
            n = 0
            while not done.is_set():
                message = {"text": f"m{n}", "by": "h", "role": "host"}
                published.append(
                    (await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)).seq
                )
                if n % 3 == 0:
                    await log.publish(
                        room.id,
                        "comment",
                        {"id": f"c{n}", "user": "u", "text": "x"},
                        lane=Lane.LOSSY,
                    )
                n += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(host())
        viewers: list[tuple[Viewer, int]] = []
        try:
            for n in range(24):
                await asyncio.sleep(0.015)
                if n % 2:
                    viewer = await Viewer.open(ws_url(served.url, room.id))
                    viewers.append((viewer, -1))
                else:
                    since = max(start, published[-1] - 5) if published else start
                    viewer = await Viewer.open(
                        ws_url(served.url, room.id, since=since, epoch=epoch),
                        resume=(epoch, since),
                    )
                    viewers.append((viewer, since))
            await asyncio.sleep(0.2)
        finally:
            done.set()
            await task
        last = published[-1]
        for viewer, since in viewers:
            await viewer.wait_for(lambda v=viewer: v.seq >= last)  # type: ignore[misc]
            origin = since if since >= 0 else viewer.snapshot_seq
            assert viewer.welcome is not None and viewer.welcome["resumed"] is (since >= 0)
            assert viewer.stale == 0 and viewer.disorder == 0  # never twice, always in order
            got = [e["seq"] for e in viewer.critical() if e["type"] == "host_message"]
            assert got == [s for s in published if s > origin]  # none missed after the start
            await viewer.close()
