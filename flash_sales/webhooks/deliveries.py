"""Deliveries in PostgreSQL: one row per event and endpoint (attempts, when next, the last status
or error, delivered or dead), grouped in queues of one sale's events to one endpoint.

Order per sale and endpoint: a queue is worked by one dispatcher at a time (it claims the queue
with a lease: `claim`, and `next_at` pushed out), and only its head, its undelivered delivery
of lowest seq, may be sent; a delivery is also held back while an earlier event of its sale is
not fanned out yet (`pending`). A sale's events are numbered gaplessly in commit order (see
flash_sales/outbox.py), so nothing of a sale is ever sent before what came before it, except what
was dead-lettered. A dispatcher that dies holding a queue loses it when the lease runs out: what
it sent in that pass and had not marked delivered yet is sent again (at least once).

An auction's events (`auction.won`) are a stream of their own, like a sale's: their queues'
`sale_id` is minus the auction's id (`outbox.stream`, live/migrations/0004_auctions.sql).

A replay (live webhooks replay) sends an event that was delivered or dead-lettered once more,
outside that order: it is sent when due, and its failures hold back nothing after it.

Every write of a dispatcher about a queue's deliveries is conditional on its claim: one whose
lease ran out (a pause, a stalled database) finds its claim taken over and stops, instead of
marking what the queue's new holder is working on.

Deliveries are made (`fan_out`) only a little ahead of what is sent: a sale whose queues are
all backed up gets no more until they move, so a burst of orders, or a receiver that is down,
does not turn into rows written for nothing while confirms need the database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from flash_sales import outbox
from flash_sales.store import ORDER_COLUMNS, order_of
from flash_sales.webhooks.endpoints import GLOBAL, Endpoint
from flash_sales.webhooks.upkeep import Upkeep

MAX_SEQ = 2**63 - 1
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Queue:
    """A sale's events to one endpoint, claimed by this dispatcher until it gives it back."""

    sale_id: int
    webhook_id: int
    url: str
    claim: uuid.UUID
    version: int
    secrets: tuple[str, ...] | None  # None: a room endpoint since removed


@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: uuid.UUID
    event_type: str
    seq: int
    attempts: int
    body: str
    due: bool  # its next_at has come (by the database's clock)
    age_s: float  # since it was made (retries stop past the policy's max age)
    replay: bool  # sent again on demand, outside the queue's order


class DeliveryStore(Upkeep):
    """Fan-out and a dispatcher's work on its queues (the upkeep: see upkeep.py)."""

    # -- fan-out: each event gets a delivery per endpoint ---------------------------------------

    async def register_globals(self, urls: Sequence[str]) -> None:
        """This process's global endpoints, registered (or seen again) for every process's
        fan-out."""
        await self.pg.execute(
            "INSERT INTO webhook_globals (url) SELECT unnest($1::text[]) "
            "ON CONFLICT (url) DO UPDATE SET seen_at = now()",
            sorted(urls),
        )

    async def fan_out(
        self,
        globals_: Sequence[Endpoint],
        limit: int,
        budget: int,
        backlog: int,
        *,
        global_ttl_s: float = 86400.0,
    ) -> int:
        """Make the deliveries of outbox entries not fanned out yet, a sale's in seq order: each
        event of an entry to the global endpoints (`globals_`, this process's, and those any
        process registered within `global_ttl_s`: see `register_globals`) and its room's, its
        body rendered once, and
        wake the queues they join. Up to `limit` entries, fewer once they hold `budget` events
        (at least one entry); none of a sale whose every queue has `backlog` deliveries waiting
        already: a receiver that is slow or down is given no more than it takes, and costs the
        database (and the confirms) no more than that. Several processes share the work (SKIP
        LOCKED). How many entries."""
        if await self.pg.fetchval("SELECT 1 FROM outbox WHERE fanned_at IS NULL LIMIT 1") is None:
            return 0
        async with self.pg.acquire() as conn, conn.transaction():
            full = await conn.fetchval(
                """SELECT coalesce(array_agg(sale_id), '{}') FROM (
                       SELECT q.sale_id FROM delivery_queues q,
                           LATERAL (SELECT count(*) AS waiting FROM (
                               SELECT 1 FROM deliveries d
                               WHERE (d.sale_id, d.webhook_id, d.url)
                                     = (q.sale_id, q.webhook_id, q.url)
                                 AND d.delivered_at IS NULL AND NOT d.dead LIMIT $1) w) c
                       WHERE q.sale_id IN (SELECT stream FROM outbox WHERE fanned_at IS NULL)
                       GROUP BY q.sale_id HAVING min(c.waiting) >= $1) f""",
                backlog,
            )
            found = await conn.fetch(
                """SELECT o.id, o.stream, o.sale_id, o.auction_id, o.seq, o.type, o.order_ids,
                          o.data, o.created_at, coalesce(s.room_id, a.room_id) AS room_id
                   FROM outbox o LEFT JOIN sales s ON s.id = o.sale_id
                        LEFT JOIN auctions a ON a.id = o.auction_id
                   WHERE o.fanned_at IS NULL AND o.stream <> ALL($2::bigint[])
                   ORDER BY o.stream, o.seq LIMIT $1
                   FOR UPDATE OF o SKIP LOCKED""",
                limit,
                full,
            )
            entries: list[asyncpg.Record] = []
            for entry in found:  # a prefix: each sale's entries stay in seq order
                if entries and budget <= 0:
                    break
                entries.append(entry)
                budget -= len(entry["order_ids"] or (entry["id"],))
            if not entries:
                return 0
            hooks: dict[str, list[tuple[int, str]]] = {}
            for row in await conn.fetch(
                "SELECT id, room_id, url FROM webhooks "
                "WHERE room_id = ANY($1::text[]) AND removed_at IS NULL",
                sorted({e["room_id"] for e in entries}),
            ):
                hooks.setdefault(row["room_id"], []).append((row["id"], row["url"]))
            registered = await conn.fetch(
                "SELECT url FROM webhook_globals WHERE seen_at > now() - make_interval(secs => $1)",
                global_ttl_s,
            )
            urls = sorted({e.url for e in globals_} | {r["url"] for r in registered})
            targets = {
                room: [(GLOBAL, url) for url in urls] + hooks.get(room, [])
                for room in {e["room_id"] for e in entries}
            }
            # Orders are read (and events rendered) only for entries that go somewhere.
            order_ids = [
                order
                for e in entries
                if e["order_ids"] and targets[e["room_id"]]
                for order in e["order_ids"]
            ]
            orders = {
                row["id"]: rendered_order(row)
                for row in await conn.fetch(
                    f"SELECT {ORDER_COLUMNS}, referrer_id FROM orders WHERE id = ANY($1::bigint[])",
                    order_ids,
                )
            }
            made: list[tuple[Any, ...]] = []
            for entry in entries:
                for event, seq, data in _events(entry, orders) if targets[entry["room_id"]] else ():
                    kind, at = entry["type"], entry["created_at"]
                    body = outbox.render(event, kind, at, data)
                    made += [
                        (entry["id"], event, kind, body, entry["stream"], seq, hook, url, at)
                        for hook, url in targets[entry["room_id"]]
                    ]
            if made:
                await conn.execute(
                    """INSERT INTO deliveries (entry_id, event_id, type, body, sale_id, seq,
                                               webhook_id, url, event_at)
                       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                                            $5::bigint[], $6::bigint[], $7::bigint[],
                                            $8::text[], $9::timestamptz[])
                       ON CONFLICT DO NOTHING""",
                    *map(list, zip(*made, strict=True)),
                )
                # In key order, so that two fan-outs lock the queues they share the same way.
                queues = sorted({(m[4], m[6], m[7]) for m in made})
                await conn.execute(
                    """INSERT INTO delivery_queues AS q (sale_id, webhook_id, url)
                       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])
                       ON CONFLICT (sale_id, webhook_id, url) DO UPDATE
                       SET version = q.version + 1,
                           next_at = CASE WHEN q.claim IS NULL THEN least(q.next_at, now())
                                          ELSE q.next_at END""",
                    *map(list, zip(*queues, strict=True)),
                )
            await conn.execute(
                "UPDATE outbox SET fanned_at = now() WHERE id = ANY($1::uuid[])",
                [e["id"] for e in entries],
            )
            return len(entries)

    # -- a dispatcher's work on its queues -------------------------------------------------------

    async def claim(
        self, limit: int, lease_s: float, global_urls: Sequence[str], busy: Sequence[str]
    ) -> list[Queue]:
        """Up to `limit` queues due now, for this dispatcher until `release` or `lease_s`;
        only global endpoints this process knows (another process may be configured with
        more), and the rooms'; none to the `busy` endpoints (urls)."""
        rows = await self.pg.fetch(
            """WITH due AS (
                   SELECT sale_id, webhook_id, url FROM delivery_queues
                   WHERE next_at <= now() AND (webhook_id <> 0 OR url = ANY($3::text[]))
                     AND url <> ALL($4::text[])
                   ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED
               )
               UPDATE delivery_queues q
               SET next_at = now() + make_interval(secs => $2), claim = gen_random_uuid()
               FROM due
               WHERE (q.sale_id, q.webhook_id, q.url) = (due.sale_id, due.webhook_id, due.url)
               RETURNING q.sale_id, q.webhook_id, q.url, q.claim, q.version,
                         (SELECT w.secrets FROM webhooks w
                          WHERE w.id = q.webhook_id AND w.removed_at IS NULL) AS secrets""",
            limit,
            lease_s,
            list(global_urls),
            list(busy),
        )
        return [
            Queue(
                r["sale_id"],
                r["webhook_id"],
                r["url"],
                r["claim"],
                r["version"],
                None if r["secrets"] is None else tuple(r["secrets"]),
            )
            for r in rows
        ]

    async def pending(self, queue: Queue, limit: int) -> list[Delivery]:
        """The queue's replays, then its first undelivered deliveries in seq order, none of
        them past an event of the sale that is not fanned out yet (one snapshot: see the
        module's docstring)."""
        rows = await self.pg.fetch(
            """SELECT d.id, d.event_id, d.type, d.seq, d.attempts, d.body, d.replay,
                      d.next_at <= now() AS due,
                      extract(epoch FROM now() - d.created_at)::float8 AS age_s
               FROM deliveries d
               WHERE d.sale_id = $1 AND d.webhook_id = $2 AND d.url = $3
                 AND d.delivered_at IS NULL AND NOT d.dead
                 AND (d.replay OR d.seq < coalesce((SELECT min(seq) FROM outbox
                                                    WHERE stream = $1 AND fanned_at IS NULL), $5))
               ORDER BY d.replay DESC, d.seq LIMIT $4""",
            queue.sale_id,
            queue.webhook_id,
            queue.url,
            limit,
            MAX_SEQ,
        )
        return [
            Delivery(
                r["id"],
                r["event_id"],
                r["type"],
                r["seq"],
                r["attempts"],
                r["body"],
                r["due"],
                r["age_s"],
                r["replay"],
            )
            for r in rows
        ]

    async def delivered(self, queue: Queue, done: Sequence[tuple[int, int]]) -> None:
        """Mark deliveries of the queue delivered: (delivery id, the status it got); nothing
        when the queue's claim is no longer this dispatcher's (they are sent again)."""
        if not done:
            return
        await self.pg.execute(
            """UPDATE deliveries d SET delivered_at = now(), attempts = d.attempts + 1,
                   last_status = u.status, last_error = NULL, dead = false
               FROM unnest($1::bigint[], $2::int[]) AS u (id, status)
               WHERE d.id = u.id AND EXISTS (SELECT 1 FROM delivery_queues q
                   WHERE (q.sale_id, q.webhook_id, q.url) = ($3, $4, $5) AND q.claim = $6)""",
            *map(list, zip(*done, strict=True)),
            queue.sale_id,
            queue.webhook_id,
            queue.url,
            queue.claim,
        )

    async def failed(
        self,
        queue: Queue,
        delivery: Delivery,
        status: int | None,
        error: str,
        retry_in_s: float | None,
    ) -> bool:
        """An attempt failed: try again in `retry_in_s`, or dead-letter it (None). False when
        the queue's claim is no longer this dispatcher's: nothing is written, and it stops."""
        written = await self.pg.execute(
            """UPDATE deliveries d SET attempts = d.attempts + 1, last_status = $2,
                   last_error = $3, next_at = now() + make_interval(secs => $4), dead = $5
               WHERE d.id = $1 AND EXISTS (SELECT 1 FROM delivery_queues q
                   WHERE (q.sale_id, q.webhook_id, q.url) = ($6, $7, $8) AND q.claim = $9)""",
            delivery.id,
            status,
            error[:MAX_ERROR_CHARS],
            retry_in_s or 0.0,
            retry_in_s is None,
            queue.sale_id,
            queue.webhook_id,
            queue.url,
            queue.claim,
        )
        return written != "UPDATE 0"

    async def drop_queue(self, queue: Queue, why: str) -> None:
        """Dead-letter what is left of a queue whose endpoint was removed."""
        await self.pg.execute(
            "UPDATE deliveries SET dead = true, last_error = $4 WHERE sale_id = $1 "
            "AND webhook_id = $2 AND url = $3 AND delivered_at IS NULL AND NOT dead",
            queue.sale_id,
            queue.webhook_id,
            queue.url,
            why,
        )

    async def release(self, queue: Queue) -> None:
        """Give the queue back, due when its head (or a replay) is; due now if a fan-out or a
        replay added to it since it was claimed (`version`: the head read here may not see
        what was added)."""
        await self.pg.execute(
            """UPDATE delivery_queues q SET claim = NULL, next_at = CASE
                   WHEN q.version <> $5 THEN now()
                   ELSE coalesce(least(
                       (SELECT d.next_at FROM deliveries d
                        WHERE d.sale_id = q.sale_id AND d.webhook_id = q.webhook_id
                          AND d.url = q.url AND d.delivered_at IS NULL AND NOT d.dead
                          AND NOT d.replay
                        ORDER BY d.seq LIMIT 1),
                       (SELECT min(d.next_at) FROM deliveries d
                        WHERE d.sale_id = q.sale_id AND d.webhook_id = q.webhook_id
                          AND d.url = q.url AND d.delivered_at IS NULL AND NOT d.dead
                          AND d.replay)), 'infinity') END
               WHERE q.sale_id = $1 AND q.webhook_id = $2 AND q.url = $3 AND q.claim = $4""",
            queue.sale_id,
            queue.webhook_id,
            queue.url,
            queue.claim,
            queue.version,
        )


def rendered_order(row: asyncpg.Record) -> dict[str, Any]:
    """An order as its event carries it: its view, and who referred the buyer (a share link's
    sharer, or null: flash_sales/referrals.py)."""
    return {**order_of(row).view(), "referrer_id": row["referrer_id"]}


def _events(
    entry: asyncpg.Record, orders: dict[int, dict[str, Any]]
) -> Iterator[tuple[uuid.UUID, int, dict[str, Any]]]:
    """(event id, seq, data) of each event of an outbox entry: its orders' `order.created`
    events in turn, or its one event."""
    owner = "auction_id" if entry["auction_id"] is not None else "sale_id"
    common = {owner: entry[owner], "room": entry["room_id"]}
    if entry["order_ids"]:
        for n, order_id in enumerate(entry["order_ids"]):
            seq = entry["seq"] + n
            data = {**common, "order": orders[order_id], "sequence": seq}
            yield outbox.order_event(entry["id"], order_id), seq, data
    else:
        yield entry["id"], entry["seq"], {**json.loads(entry["data"]), "sequence": entry["seq"]}
