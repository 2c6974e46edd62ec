"""What the operator's commands read and do (`live webhooks ...`): the endpoints and how their
deliveries stand, the deliveries themselves, a replay of an event, a test delivery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from flash_sales import outbox
from flash_sales.webhooks.endpoints import GLOBAL, Endpoint


@dataclass(frozen=True)
class EndpointStatus:
    webhook_id: int  # 0: global
    room: str  # "" for a global endpoint
    url: str
    pending: int
    delivered: int
    dead: int


@dataclass(frozen=True)
class DeliveryRow:
    event_id: str
    event_type: str
    sale_id: int
    seq: int
    webhook_id: int
    url: str
    attempts: int
    state: str  # delivered, pending, failing (pending after a failed attempt), dead
    last_status: int | None
    last_error: str | None
    next_at: datetime


async def endpoints(pg: asyncpg.Pool, globals_: Sequence[Endpoint]) -> list[EndpointStatus]:
    """The global endpoints (this process's and those any process registered) and the rooms'
    (not removed), with their deliveries' counts."""
    counts = {
        (r["webhook_id"], r["url"]): (r["pending"], r["delivered"], r["dead"])
        for r in await pg.fetch(
            """SELECT webhook_id, url,
                      count(*) FILTER (WHERE delivered_at IS NULL AND NOT dead) AS pending,
                      count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                      count(*) FILTER (WHERE dead) AS dead
               FROM deliveries GROUP BY webhook_id, url"""
        )
    }
    registered = [r["url"] for r in await pg.fetch("SELECT url FROM webhook_globals ORDER BY url")]
    urls = dict.fromkeys([e.url for e in globals_] + registered)
    found = [(GLOBAL, "", url) for url in urls] + [
        (r["id"], r["room_id"], r["url"])
        for r in await pg.fetch(
            "SELECT id, room_id, url FROM webhooks WHERE removed_at IS NULL ORDER BY id"
        )
    ]
    return [
        EndpointStatus(hook, room, url, *counts.get((hook, url), (0, 0, 0)))
        for hook, room, url in found
    ]


async def deliveries(pg: asyncpg.Pool, *, failed: bool, limit: int) -> list[DeliveryRow]:
    """The latest deliveries (newest event first); `failed`: only those whose last attempt
    failed and that are not delivered (retrying, or dead)."""
    where = "WHERE d.delivered_at IS NULL AND (d.attempts > 0 OR d.dead)" if failed else ""
    rows = await pg.fetch(
        f"""SELECT d.event_id, d.type, d.sale_id, d.seq, d.webhook_id, d.url, d.attempts,
                   d.delivered_at, d.dead, d.last_status, d.last_error, d.next_at
            FROM deliveries d {where}
            ORDER BY d.event_at DESC, d.id DESC LIMIT $1""",
        limit,
    )
    return [
        DeliveryRow(
            outbox.event_id(r["event_id"]),
            r["type"],
            r["sale_id"],
            r["seq"],
            r["webhook_id"],
            r["url"],
            r["attempts"],
            _state(r),
            r["last_status"],
            r["last_error"],
            r["next_at"],
        )
        for r in rows
    ]


def _state(row: asyncpg.Record) -> str:
    if row["delivered_at"] is not None:
        return "delivered"
    if row["dead"]:
        return "dead"
    return "failing" if row["attempts"] else "pending"


async def replay(pg: asyncpg.Pool, event: str, global_urls: Sequence[str]) -> int | None:
    """Send the event again to each endpoint it went to that still exists (`global_urls`, or
    registered by a process: see DeliveryStore.register_globals; a room's not removed),
    dead-lettered or delivered alike: due now, its retry window from now, and outside its
    queue's order (a replay that fails again holds back no later event). How many
    deliveries; None for no such event (or none fanned out yet)."""
    event_uuid = outbox.event_uuid(event)
    if event_uuid is None:
        return None
    async with pg.acquire() as conn, conn.transaction():
        known = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_id = $1) "
            "OR EXISTS (SELECT 1 FROM outbox WHERE id = $1 AND fanned_at IS NOT NULL)",
            event_uuid,
        )
        if not known:
            return None
        again = await conn.fetch(
            """UPDATE deliveries SET dead = false, delivered_at = NULL, attempts = 0,
                   next_at = now(), created_at = now(), last_error = NULL, last_status = NULL,
                   replay = replay OR dead OR delivered_at IS NOT NULL
               WHERE event_id = $1
                 AND ((webhook_id = 0 AND (url = ANY($2::text[])
                                           OR url IN (SELECT url FROM webhook_globals)))
                      OR webhook_id IN (SELECT id FROM webhooks WHERE removed_at IS NULL))
               RETURNING sale_id, webhook_id, url""",
            event_uuid,
            list(global_urls),
        )
        queues = sorted({(r["sale_id"], r["webhook_id"], r["url"]) for r in again})
        if queues:
            await conn.execute(
                """UPDATE delivery_queues q SET version = q.version + 1,
                       next_at = CASE WHEN q.claim IS NULL THEN now() ELSE q.next_at END
                   FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u (s, w, url)
                   WHERE (q.sale_id, q.webhook_id, q.url) = (u.s, u.w, u.url)""",
                *map(list, zip(*queues, strict=True)),
            )
        return len(again)


def test_body() -> tuple[str, str]:
    """A `webhook.test` event (never written to the outbox): its id and body."""
    event = uuid.uuid4()
    now = datetime.fromtimestamp(time.time()).astimezone()
    body = outbox.render(event, "webhook.test", now, {"message": "a test from live"})
    return outbox.event_id(event), body
