"""`live serve --demo`: a demo room with products and a pinned one, and ready-to-open links."""

from __future__ import annotations

import time

from live import db
from live.app import redis_client
from live.settings import Settings
from rooms.auth import Claims, Role, mint
from rooms.log import RoomLog
from rooms.presence import Presence
from rooms.service import CommentPolicy, RoomService

ROOM = "demo"
PRODUCTS = [
    ("mug", "Stoneware mug", 1800),
    ("tote", "Canvas tote bag", 2400),
    ("lamp", "Brass desk lamp", 8900),
]
LINK_TTL_S = 12 * 3600


async def seed(settings: Settings) -> None:
    """Create (or refresh) the demo room, its products and a pin; safe to run at every start."""
    pool = await db.create_pool(settings)
    client = redis_client(settings)
    try:
        room_log = RoomLog(client, settings.redis_prefix)
        presence = Presence(client, settings.redis_prefix, "demo-seed")
        policy = CommentPolicy(settings.comment_max_chars, settings.comments_per_10s)
        rooms = RoomService(pool, client, room_log, presence, policy)
        host = Claims("host", Role.HOST, ROOM, int(time.time()) + 60, "Host")
        await rooms.put_room(ROOM, host, "Demo stream", {})
        products = [await rooms.add_product(ROOM, *product, image_url="") for product in PRODUCTS]
        await rooms.pin(ROOM, products[0]["id"])
    finally:
        await client.aclose()
        await pool.close()


def links(settings: Settings, base_url: str) -> list[str]:
    secret = settings.resolved_jwt_secret()

    def token(sub: str, role: Role, name: str) -> str:
        return mint(secret, sub=sub, role=role, room=ROOM, ttl_s=LINK_TTL_S, name=name)

    lines = [f"host console: {base_url}/host/{ROOM}#token={token('host', Role.HOST, 'Host')}"]
    for viewer in ("alice", "bob", "carol"):
        url = f"{base_url}/watch/{ROOM}#token={token(viewer, Role.VIEWER, viewer.title())}"
        lines.append(f"viewer {viewer}: {url}")
    lines.append(f"anonymous viewer: {base_url}/watch/{ROOM}")
    return lines
