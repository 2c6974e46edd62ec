"""Direct messages: a message on a room's direct channel reaches every connection of its user in
that room (real WebSocket clients over real sockets) and no one else's, on the reply path; a
viewer who signs in after joining gets them from then on; a resume does not replay them (the
protocol has the client re-read the state they announce)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from gateway_testkit import Viewer, make_room, serve, ws_url

from flash_sales.auctions.announcements import AuctionAnnouncer, direct_channel
from flash_sales.store import SaleStore
from live.app import services
from live.settings import Settings
from rooms.log import RoomLog


def directs(viewer: Viewer, kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in viewer.others if f["type"] == "direct" and kind in (None, f["kind"])]


async def test_a_direct_message_reaches_only_its_users_connections(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        log = RoomLog(redis, settings.redis_prefix)
        assert direct_channel(log, room.id) == log.keys(room.id).direct
        announcer = AuctionAnnouncer(log, SaleStore(services(served.app).pg))
        alice = room.viewer_token("alice")
        url = ws_url(served.url, room.id)
        alice_phone = await Viewer.open(f"{url}?token={alice}")
        alice_laptop = await Viewer.open(f"{url}?token={alice}")
        bob = await Viewer.open(f"{url}?token={room.viewer_token('bob')}")
        anonymous = await Viewer.open(url)
        everyone = [alice_phone, alice_laptop, bob, anonymous]
        keys = log.keys(room.id)
        assert {keys.channel, keys.direct} <= served.gateway.subscriber._channels
        warm = (await room.pin())["seq"]  # through pub/sub: the subscription is in effect
        for viewer in everyone:
            await viewer.wait_for(lambda v=viewer: v.seq >= warm)  # type: ignore[misc]

        outbid = {"auction_id": 7, "price_cents": 1500, "min_next_cents": 1600, "ends_at": 1}
        await announcer.direct(room.id, "alice", "outbid", outbid)
        await announcer.direct(room.id, "bob", "auction_offer", {"auction_id": 7})
        # A room event published after them reaches everyone after them: by then every direct
        # frame has been written (both on one subscription, in order; direct frames go at once).
        pinned = (await room.pin())["seq"]
        for viewer in everyone:
            await viewer.wait_for(lambda v=viewer: v.seq >= pinned)  # type: ignore[misc]
        for viewer in (alice_phone, alice_laptop):
            assert [(f["kind"], f["data"]) for f in directs(viewer)] == [("outbid", outbid)]
            assert "seq" not in directs(viewer)[0]
        assert [f["kind"] for f in directs(bob)] == ["auction_offer"]
        assert directs(anonymous) == []

        # The anonymous viewer signs in as alice: alice's messages reach it from then on.
        await anonymous.send({"type": "auth", "ref": "a", "token": alice})
        assert (await anonymous.reply("a"))["ok"] is True
        await announcer.direct(room.id, "alice", "auction_offer", {"auction_id": 8})
        for viewer in (alice_phone, alice_laptop, anonymous):
            await viewer.wait_for(lambda v=viewer: directs(v, "auction_offer") != [])  # type: ignore[misc]

        # The phone drops and resumes: messages sent meanwhile are not replayed (the client
        # re-reads its offers), and the resumed connection gets the next ones.
        await alice_phone.close()
        await announcer.direct(room.id, "alice", "outbid", {"auction_id": 9})
        await alice_laptop.wait_for(lambda: len(directs(alice_laptop, "outbid")) == 2)
        back = await Viewer.open(
            ws_url(served.url, room.id, token=alice, **alice_phone.resume_params()),
            resume=(alice_phone.epoch, alice_phone.seq),
        )
        assert back.welcome is not None and back.welcome["resumed"] is True
        await announcer.direct(room.id, "alice", "outbid", {"auction_id": 10})
        await back.wait_for(lambda: directs(back) != [])
        assert [f["data"]["auction_id"] for f in directs(back)] == [10]
        for viewer in [alice_laptop, bob, anonymous, back]:
            await viewer.close()
