"""`live serve --demo`: a demo room with products and a pinned one, and ready-to-open links."""

from __future__ import annotations

from gateway.auth import mint
from live.services import build_services
from live.settings import Settings
from rooms.actors import Actor, Role

ROOM = "demo"
PRODUCTS = [
    ("mug", "Stoneware mug", 1800),
    ("tote", "Canvas tote bag", 2400),
    ("lamp", "Brass desk lamp", 8900),
]
LINK_TTL_S = 12 * 3600


async def seed(settings: Settings) -> None:
    """Create (or refresh) the demo room, its products and a pin; safe to run at every start."""
    host = Actor("host", Role.HOST, ROOM, "Host")
    async with build_services(settings) as services:
        rooms = services.rooms
        await rooms.put_room(ROOM, host, "Demo stream", {})
        products = [
            await rooms.add_product(ROOM, host, sku, title, price_cents, image_url="")
            for sku, title, price_cents in PRODUCTS
        ]
        await rooms.pin(ROOM, host, products[0]["id"])


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
