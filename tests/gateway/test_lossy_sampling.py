"""Lossy events sampled to a readable rate per viewer (`lossy_per_s`): under a comment flood
each viewer gets about that many comments a second, every one left out counted in `skipped`,
while every critical event and the latest state still arrive. The sampling is the room's, once
for all its viewers (gateway/lanes.py's Sampler), so they all get the same comments. A frame of
state changes alone waits a little (`state_gap_s`) and goes with the latest values."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from gateway_testkit import close_all, eventually, make_room, open_viewers, serve, ws_url
from hypothesis import given
from hypothesis import strategies as st

from gateway.connection import Connection, Frame
from gateway.hub import HubConfig, RoomHub
from gateway.lanes import Sampler
from live.redis_client import RedisClient
from live.settings import Settings
from rooms.events import Lane
from rooms.log import RoomLog

PER_S = 10
ROUNDS = 30
COMMENTS_PER_ROUND = 25


@given(
    st.floats(0.5, 200),
    st.lists(st.floats(0, 0.5), max_size=300),
    st.floats(0.01, 5),
)
def test_the_sampler_never_lets_more_through_than_its_rate_and_burst(
    per_s: float, gaps: list[float], window_s: float
) -> None:
    sampler = Sampler(per_s)
    now, taken = 0.0, []
    for gap in gaps:
        now += gap
        if sampler.take(now):
            taken.append(now)
    for i, start in enumerate(taken):
        within = sum(1 for t in taken[i:] if t <= start + window_s)
        assert within <= sampler.burst + per_s * window_s + 1e-9


def test_a_sampler_at_zero_lets_everything_through() -> None:
    sampler = Sampler(0)
    assert all(sampler.take(0.0) for _ in range(1000))


class Recorder:
    """Stands where a Connection would: keeps the frames the hub offers it."""

    closed = False
    is_synced = True

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def offer(self, frame: Frame) -> bool:
        self.frames.append(json.loads(frame.full))
        return True


def _event(seq: int, kind: str, lane: str, **data: object) -> bytes:
    key = {"key": f"stock:{data['sale_id']}"} if lane == "state" else {}
    event = {"seq": seq, "epoch": "e", "ts": 1, "type": kind, "lane": lane, **key, "data": data}
    return json.dumps(event).encode()


async def test_state_changes_alone_wait_and_go_conflated_with_the_next_frame() -> None:
    hub = RoomHub("r", HubConfig(state_gap_s=3600), *[_unused] * 3)
    hub.epoch = "e"
    viewer = Recorder()
    hub.add(cast(Connection, viewer))
    hub.receive(_event(1, "pinned", "critical"))
    hub.tick_next_group()  # a critical event goes at once
    for seq in range(2, 6):
        hub.receive(_event(seq, "stock", "state", sale_id=1, remaining=10 - seq))
        hub.tick_next_group()  # state alone, within the gap: waits
    assert [[e["seq"] for e in f["events"]] for f in viewer.frames] == [[1]]
    hub.receive(_event(6, "host_message", "critical"))
    hub.tick_next_group()  # the next critical event takes the latest state along
    assert [[e["seq"] for e in f["events"]] for f in viewer.frames] == [[1], [5, 6]]
    hub.receive(_event(7, "stock", "state", sale_id=1, remaining=0))
    hub.flush()  # on shutdown nothing waits
    assert [e["data"]["remaining"] for e in viewer.frames[-1]["events"]] == [0]


async def _unused(*args: object) -> Any:
    raise AssertionError("no log access expected")


async def test_a_comment_flood_is_sampled_for_the_room_critical_and_state_kept(
    settings: Settings, redis: RedisClient
) -> None:
    async with serve(settings, lossy_per_s=PER_S) as served:
        room = await make_room(served.url, settings)
        viewers = await open_viewers(ws_url(served.url, room.id), 4)
        log = RoomLog(redis, settings.redis_prefix)
        critical: list[int] = []
        comments = 0
        started = time.monotonic()
        for n in range(ROUNDS):
            for i in range(COMMENTS_PER_ROUND):  # one at a time: one connection on a cluster
                comment = {"id": f"c{n}.{i}", "user": "fan", "name": "Fan", "text": "wow"}
                await log.publish(room.id, "comment", comment, lane=Lane.LOSSY)
            comments += COMMENTS_PER_ROUND
            stock = {"sale_id": 1, "remaining": ROUNDS - n, "stock": ROUNDS}
            await log.publish(room.id, "stock", stock, lane=Lane.STATE, key="stock:1")
            message = {"text": f"deal {n}", "by": "host", "role": "host"}
            published = await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)
            critical.append(published.seq)
        last = critical[-1]
        await eventually(
            lambda: all(v.seq >= last and v.lossy + v.skipped == comments for v in viewers),
            within=20,
        )
        elapsed_s = time.monotonic() - started
        budget = Sampler(PER_S).burst + PER_S * elapsed_s
        sampled = {tuple(e["seq"] for e in v.applied if e["lane"] == "lossy") for v in viewers}
        assert len(sampled) == 1  # one sample for the room: the same comments for every viewer
        received = len(next(iter(sampled)))
        print(f"\n{comments} comments in {elapsed_s:.2f} s: {received} sent to each viewer")
        assert 1 <= received <= budget
        for viewer in viewers:
            assert sorted(viewer.arrivals) == critical  # every critical event, once each
            stocks = [e["data"]["remaining"] for e in viewer.applied if e["type"] == "stock"]
            assert stocks and stocks[-1] == 1  # the latest state
            assert stocks == sorted(stocks, reverse=True)
            # Nothing dropped silently: each comment sent or counted as skipped, once.
            assert viewer.lossy == received and viewer.skipped == comments - received
            assert viewer.stale == 0 and viewer.disorder == 0
        await close_all(viewers)
