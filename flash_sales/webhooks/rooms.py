"""A room's own endpoints, managed by its hosts: added (or their secrets changed) by URL, listed
without their secrets, removed. A removed endpoint gets nothing more: what was still to be sent
to it is dead-lettered with it. Events reach an endpoint from when it was added (when they are
fanned out, a moment after they are written). An endpoint must be at a public address unless
the operator allows private ones (see addresses.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from flash_sales.webhooks.addresses import check_public_url
from flash_sales.webhooks.endpoints import check_secrets, check_url
from rooms.actors import Action, Actor, authorize
from rooms.errors import Conflict, not_found
from rooms.rules import check_room_id

MAX_PER_ROOM = 10
_COLUMNS = "id, room_id, url, cardinality(secrets) AS secrets, created_at, updated_at"


def _view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "room": row["room_id"],
        "url": row["url"],
        "secrets": row["secrets"],  # how many are active, never what they are
        "created_at": _ms(row["created_at"]),
        "updated_at": _ms(row["updated_at"]),
    }


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class RoomWebhooks:
    def __init__(self, pg: asyncpg.Pool, allow_private: bool, resolve_timeout_s: float) -> None:
        self.pg = pg
        self.allow_private = allow_private
        self.resolve_timeout_s = resolve_timeout_s

    async def put(
        self, room: str, actor: Actor, url: str, secret: str
    ) -> tuple[dict[str, Any], bool]:
        """Add an endpoint, or give the room's endpoint of this URL new secrets (one, or two
        while the receiver moves to the new one); the endpoint and whether it is new."""
        authorize(actor, room, Action.MANAGE_WEBHOOKS)
        check_room_id(room)
        url, secrets = check_url(url), list(check_secrets(secret))
        if not self.allow_private:
            await check_public_url(url, self.resolve_timeout_s)
        async with self.pg.acquire() as conn, conn.transaction():
            # The room's row, locked: two hosts adding endpoints at once are counted one by one.
            if await conn.fetchval("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room) is None:
                raise not_found(f"no room {room!r}")
            row = await conn.fetchrow(
                f"""UPDATE webhooks SET secrets = $3, updated_at = now()
                    WHERE room_id = $1 AND url = $2 AND removed_at IS NULL
                    RETURNING {_COLUMNS}""",
                room,
                url,
                secrets,
            )
            if row is not None:
                return _view(row), False
            count = await conn.fetchval(
                "SELECT count(*) FROM webhooks WHERE room_id = $1 AND removed_at IS NULL", room
            )
            if count >= MAX_PER_ROOM:
                raise Conflict("too_many", f"a room has at most {MAX_PER_ROOM} endpoints")
            row = await conn.fetchrow(
                f"""INSERT INTO webhooks (room_id, url, secrets) VALUES ($1, $2, $3)
                    RETURNING {_COLUMNS}""",
                room,
                url,
                secrets,
            )
            assert row is not None
            return _view(row), True

    async def endpoints(self, room: str, actor: Actor) -> list[dict[str, Any]]:
        authorize(actor, room, Action.MANAGE_WEBHOOKS)
        check_room_id(room)
        rows = await self.pg.fetch(
            f"SELECT {_COLUMNS} FROM webhooks WHERE room_id = $1 AND removed_at IS NULL "
            "ORDER BY id",
            room,
        )
        return [_view(row) for row in rows]

    async def remove(self, room: str, actor: Actor, webhook_id: int) -> dict[str, Any]:
        """Remove the room's endpoint (again: the same answer); 404 for no such endpoint."""
        authorize(actor, room, Action.MANAGE_WEBHOOKS)
        check_room_id(room)
        async with self.pg.acquire() as conn, conn.transaction():
            removed = await conn.fetchval(
                "UPDATE webhooks SET removed_at = coalesce(removed_at, now()) "
                "WHERE id = $1 AND room_id = $2 RETURNING id",
                webhook_id,
                room,
            )
            if removed is None:
                raise not_found(f"no webhook {webhook_id} in room {room!r}")
            await conn.execute(
                "UPDATE deliveries SET dead = true, last_error = 'endpoint removed' "
                "WHERE webhook_id = $1 AND delivered_at IS NULL AND NOT dead",
                webhook_id,
            )
        return {"id": webhook_id, "removed": True}
