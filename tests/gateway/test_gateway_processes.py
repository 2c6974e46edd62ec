"""Two gateway processes on one Redis and one PostgreSQL: a viewer's events do not depend on
which process it is connected to or which one the host published through."""

from __future__ import annotations

import asyncio

from gateway_testkit import (
    Viewer,
    close_all,
    eventually,
    make_room,
    open_viewers,
    serve,
    serving_process,
    ws_url,
)

from live.settings import Settings

VIEWERS_PER_PROCESS = 20
PINS = 30


async def test_two_processes_deliver_every_pin_in_order_exactly_once(settings: Settings) -> None:
    async with serve(settings) as here, serving_process(settings) as there:
        room = await make_room(here.url, settings)
        viewers: list[Viewer] = []
        for base in (here.url, there):
            viewers += await open_viewers(ws_url(base, room.id), VIEWERS_PER_PROCESS)
        published: list[int] = []
        for n in range(PINS):
            base = (here.url, there)[n % 2]  # through either process
            product = room.products[n % len(room.products)]
            published.append((await room.pin(product, base=base))["seq"])
            if n % 5 == 0:
                await asyncio.sleep(0.06)  # some pins share a tick, some do not
        assert published == sorted(published) and len(set(published)) == PINS

        await eventually(lambda: all(v.seq >= published[-1] for v in viewers), within=15)
        for viewer in viewers:
            pins = [e for e in viewer.applied if e["type"] == "pinned"]
            assert [e["seq"] for e in pins] == published
            assert [e["data"]["product"]["id"] for e in pins] == [
                room.products[n % len(room.products)] for n in range(PINS)
            ]
            assert viewer.disorder == 0 and viewer.stale == 0  # in order, never twice
        await close_all(viewers)
