"""What hosts, moderators and viewers do to a room: PostgreSQL for what lasts (rooms, products),
Redis for the live state, every change announced through the room's event log."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from rooms import scripts
from rooms.actors import Action, Actor, authorize
from rooms.comment_gate import CommentGate
from rooms.errors import (
    Conflict,
    Invalid,
    Unauthenticated,
    forbidden,
    invalid,
    not_found,
)
from rooms.events import Lane
from rooms.log import Published, RoomLog
from rooms.presence import Presence
from rooms.rules import (
    MAX_HOST_MESSAGE,
    MAX_MUTE_S,
    MAX_SLOW_MODE_S,
    CommentPolicy,
    check_room_id,
    has_blocked_word,
    room_settings,
)


def _product(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sku": row["sku"],
        "title": row["title"],
        "price_cents": row["price_cents"],
        "image_url": row["image_url"],
    }


def room_ended(room: str) -> Conflict:
    return Conflict("room_ended", f"the stream in room {room!r} has ended")


ENDED_ROOM_TTL_S = 24 * 3600


class RoomService:
    def __init__(
        self,
        pg: asyncpg.Pool,
        client: scripts.Client,
        log: RoomLog,
        presence: Presence,
        policy: CommentPolicy,
        *,
        allow_anonymous: bool = True,
        ended_ttl_s: int = ENDED_ROOM_TTL_S,
    ) -> None:
        self.pg = pg
        self.redis = client
        self.log = log
        self.ended_ttl_s = ended_ttl_s  # how long an ended room's live state stays in Redis
        self.presence = presence
        self.policy = policy
        self.allow_anonymous = allow_anonymous  # service-wide; a room may only narrow it
        self.comment_gate = CommentGate(client, log, policy)

    # -- rooms and products (PostgreSQL) --------------------------------------------------

    async def put_room(
        self, room: str, actor: Actor, title: str, settings: dict[str, Any]
    ) -> dict[str, Any]:
        """Create the room, or change its title and settings; `host_id` keeps who made it."""
        check_room_id(room)
        authorize(actor, room, Action.MANAGE_ROOM)
        if not 0 < len(title) <= 200:
            raise invalid("title must be 1-200 characters")
        clean = room_settings(settings)
        row = await self.pg.fetchrow(
            """INSERT INTO rooms (id, title, host_id, settings) VALUES ($1, $2, $3, $4::jsonb)
               ON CONFLICT (id) DO UPDATE SET title = excluded.title, settings = excluded.settings
               RETURNING id, title, host_id, settings, ended_at""",
            room,
            title,
            actor.user,
            json.dumps(clean),
        )
        assert row is not None
        room_view = _room(row)
        await self.log.publish(
            room,
            "room_updated",
            {"room": room_view},
            lane=Lane.CRITICAL,
            state_op="set",
            state_field="room",
            state_value=json.dumps(room_view),
        )
        return room_view

    async def room(self, room: str) -> dict[str, Any]:
        check_room_id(room)
        row = await self.pg.fetchrow(
            "SELECT id, title, host_id, settings, ended_at FROM rooms WHERE id = $1", room
        )
        if row is None:
            raise not_found(f"no room {room!r}")
        return _room(row)

    async def live_room(self, room: str) -> dict[str, Any]:
        """The room, which must not have ended."""
        room_view = await self.room(room)
        if room_view["ended"]:
            raise room_ended(room)
        return room_view

    async def add_product(
        self, room: str, actor: Actor, sku: str, title: str, price_cents: int, image_url: str
    ) -> dict[str, Any]:
        authorize(actor, room, Action.ADD_PRODUCT)
        await self.room(room)
        try:
            row = await self.pg.fetchrow(
                """INSERT INTO products (room_id, sku, title, price_cents, image_url)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (room_id, sku) DO UPDATE
                   SET title = excluded.title, price_cents = excluded.price_cents,
                       image_url = excluded.image_url
                   RETURNING id, sku, title, price_cents, image_url""",
                room,
                sku,
                title,
                price_cents,
                image_url,
            )
        except asyncpg.CheckViolationError:
            raise invalid("product fields out of range") from None
        assert row is not None
        return _product(row)

    async def products(self, room: str) -> list[dict[str, Any]]:
        await self.room(room)
        rows = await self.pg.fetch(
            "SELECT id, sku, title, price_cents, image_url FROM products "
            "WHERE room_id = $1 ORDER BY id",
            room,
        )
        return [_product(r) for r in rows]

    async def product(self, room: str, product_id: int) -> dict[str, Any]:
        row = await self.pg.fetchrow(
            "SELECT id, sku, title, price_cents, image_url FROM products "
            "WHERE id = $1 AND room_id = $2",
            product_id,
            room,
        )
        if row is None:
            raise not_found(f"no product {product_id} in room {room!r}")
        return _product(row)

    # -- live state (Redis, announced through the log) ------------------------------------

    async def pin(self, room: str, actor: Actor, product_id: int) -> Published:
        authorize(actor, room, Action.PIN)
        await self.live_room(room)
        product = await self.product(room, product_id)
        return await self.log.publish(
            room,
            "pinned",
            {"product": product},
            lane=Lane.CRITICAL,
            state_op="set",
            state_field="pinned",
            state_value=json.dumps(product),
        )

    async def unpin(self, room: str, actor: Actor) -> Published:
        authorize(actor, room, Action.PIN)
        await self.live_room(room)
        return await self.log.publish(
            room, "unpinned", {}, lane=Lane.CRITICAL, state_op="del", state_field="pinned"
        )

    async def host_message(self, room: str, actor: Actor, text: str) -> Published:
        authorize(actor, room, Action.MESSAGE)
        await self.live_room(room)
        text = text.strip()
        if not 0 < len(text) <= MAX_HOST_MESSAGE:
            raise invalid(f"a host message is 1-{MAX_HOST_MESSAGE} characters")
        message = {"text": text, "by": actor.display_name, "role": actor.role.value}
        return await self.log.publish(
            room,
            "host_message",
            message,
            lane=Lane.CRITICAL,
            state_op="set",
            state_field="host_message",
            state_value=json.dumps(message),
        )

    async def slow_mode(self, room: str, actor: Actor, seconds: int) -> Published:
        authorize(actor, room, Action.MODERATE)
        await self.live_room(room)
        if not 0 <= seconds <= MAX_SLOW_MODE_S:
            raise invalid(f"slow mode is 0 (off) to {MAX_SLOW_MODE_S} seconds")
        return await self.log.publish(
            room,
            "slow_mode",
            {"seconds": seconds},
            lane=Lane.CRITICAL,
            state_op="set",
            state_field="slow_mode",
            state_value=str(seconds),
        )

    async def mute(self, room: str, actor: Actor, user: str, seconds: int) -> None:
        authorize(actor, room, Action.MODERATE)
        await self.room(room)
        if not user or len(user) > 200:
            raise invalid("user must be 1-200 characters")
        if not 0 < seconds <= MAX_MUTE_S:
            raise invalid(f"a mute lasts 1-{MAX_MUTE_S} seconds")
        now_s, now_us = await self.redis.time()
        until = now_s * 1000 + now_us // 1000 + seconds * 1000  # compared with Redis TIME
        await self.redis.hset(self.log.keys(room).muted, user, str(until))

    async def unmute(self, room: str, actor: Actor, user: str) -> None:
        authorize(actor, room, Action.MODERATE)
        await self.room(room)
        await self.redis.hdel(self.log.keys(room).muted, user)

    async def delete_comment(self, room: str, actor: Actor, comment_id: str) -> Published:
        authorize(actor, room, Action.MODERATE)
        await self.room(room)
        if not 0 < len(comment_id) <= 64:
            raise invalid("comment ids are 1-64 characters")
        keys = self.log.keys(room)
        for raw in await self.redis.lrange(keys.recent_comments, 0, -1):
            if json.loads(raw)["data"]["id"] == comment_id:
                await self.redis.lrem(keys.recent_comments, 0, raw)  # type: ignore[arg-type]
        return await self.log.publish(
            room, "comment_deleted", {"id": comment_id}, lane=Lane.CRITICAL
        )

    async def end(self, room: str, actor: Actor) -> Published:
        """The stream is over: viewers are told, and the room's live state in Redis expires
        after `ended_ttl_s` (PostgreSQL keeps the room, its products, sales and orders)."""
        authorize(actor, room, Action.END_STREAM)
        await self.room(room)
        await self.pg.execute(
            "UPDATE rooms SET ended_at = coalesce(ended_at, now()) WHERE id = $1", room
        )
        published = await self.log.publish(
            room,
            "room_ended",
            {},
            lane=Lane.CRITICAL,
            state_op="set",
            state_field="ended",
            state_value="1",
        )
        await self._expire(self.log.keys(room).live)
        return published

    async def _expire(self, keys: tuple[str, ...]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.expire(key, self.ended_ttl_s)
            await pipe.execute()

    # -- viewers ----------------------------------------------------------------------------

    async def announce_viewers(self, room: str, count: int) -> Published:
        """The room's viewer count over every process (what Presence.report told its caller to
        announce): a state event, the latest per tick reaching the viewers."""
        return await self.log.publish(
            room, "viewers", {"count": count}, lane=Lane.STATE, key="viewers"
        )

    async def may_watch(self, room: str, actor: Actor | None) -> None:
        """Anyone may watch who is signed in for the room, and anyone at all where the service
        and the room allow anonymous viewers; 404 for no such room."""
        if actor is not None:
            if actor.room != room:
                raise forbidden("this token is for another room")
            return
        if not (await self.settings(room))["allow_anonymous"]:
            raise Unauthenticated("token_required", "this room needs a token to watch")

    async def settings(self, room: str) -> dict[str, Any]:
        """The room's settings in effect, from Redis, or from PostgreSQL when Redis lost them.
        `allow_anonymous` is false when the service or the room refuses anonymous watching."""
        settings, _ = await self._policy(room)
        allowed = self.allow_anonymous and settings.get("allow_anonymous", True) is True
        return {**settings, "allow_anonymous": allowed}

    async def _policy(self, room: str) -> tuple[dict[str, Any], bool]:
        """(settings, ended) of the room, read from its live state in one call."""
        check_room_id(room)
        raw, ended = await self.redis.hmget(self.log.keys(room).state, ["room", "ended"])
        room_view = await self._live_room(room, raw, ended is not None)
        return room_view["settings"], room_view["ended"]

    async def _live_room(self, room: str, raw: str | bytes | None, ended: bool) -> dict[str, Any]:
        """The room as its live state holds it (`raw`, and whether `ended` is set there), or
        from PostgreSQL when Redis lost it."""
        room_view = json.loads(raw) if raw is not None else await self._restore_room(room)
        room_view["ended"] = bool(room_view["ended"]) or ended
        return room_view

    async def _restore_room(self, room: str) -> dict[str, Any]:
        """The room from PostgreSQL, put back in its live state when Redis lost it (or never
        had it); never over a newer value written by put_room meanwhile."""
        room_view = await self.room(room)
        state = self.log.keys(room).state
        await self.redis.hsetnx(state, "room", json.dumps(room_view))
        if room_view["ended"]:
            await self.redis.hsetnx(state, "ended", "1")
            await self._expire((state,))  # a late visitor must not keep it forever
        return room_view

    async def comment(self, room: str, actor: Actor, text: str) -> Published:
        check_room_id(room)
        authorize(actor, room, Action.COMMENT)
        text = text.strip()
        if not 0 < len(text) <= self.policy.max_chars:
            raise invalid(f"a comment is 1-{self.policy.max_chars} characters")
        settings, ended = await self._policy(room)
        if ended:
            raise room_ended(room)
        if has_blocked_word(text, settings.get("blocked_words", [])):
            raise Invalid("blocked_word", "the comment contains a blocked word")
        comment_id = uuid.uuid4().hex[:16]
        await self.comment_gate.admit(room, actor.user, comment_id)
        comment = {
            "id": comment_id,
            "user": actor.user,
            "name": actor.display_name,
            "text": text,
        }
        return await self.log.publish(
            room, "comment", comment, lane=Lane.LOSSY, event_id=f"comment:{comment_id}"
        )

    async def snapshot(self, room: str) -> dict[str, Any]:
        """Everything a viewer needs to draw the room now, with the log position to resume from:
        the state and the position are read in one atomic step, so they agree. The room comes
        from the live state too (put_room writes it there with its event): a viewer's join
        does not touch PostgreSQL unless Redis lost the room.

        Other packages add their parts (flash_sales: `sale`, `stock`) through the extension
        point `RoomLog.add_snapshot_part`: each part is a live-state field its owner sets with
        its events, shown here under its name (null while unset) without rooms naming it."""
        check_room_id(room)
        live = await self.log.state(room)
        state = live.state
        room_view = await self._live_room(room, state.get("room"), "ended" in state)
        return {
            **live.parts,
            "room": room_view,
            "pinned": json.loads(state["pinned"]) if "pinned" in state else None,
            "host_message": json.loads(state["host_message"]) if "host_message" in state else None,
            "slow_mode": int(state.get("slow_mode", "0")),
            "viewers": await self.presence.count(room),
            "comments": live.recent_comments,
            "seq": live.seq,
            "epoch": live.epoch,
            "server_time_ms": live.server_time_ms,
        }


def _room(row: asyncpg.Record) -> dict[str, Any]:
    settings = row["settings"]
    return {
        "id": row["id"],
        "title": row["title"],
        "host": row["host_id"],
        "settings": json.loads(settings) if isinstance(settings, str) else settings,
        "ended": row["ended_at"] is not None,
    }
