"""The upkeep of the deliveries in PostgreSQL: the age of what is undelivered (a metric),
dead-lettering what nobody sends any more, and forgetting what is old and done."""

from __future__ import annotations

import asyncpg


class Upkeep:
    def __init__(self, pg: asyncpg.Pool) -> None:
        self.pg = pg

    async def oldest_undelivered_s(self) -> float:
        """Age of the oldest event not delivered to every endpoint yet (not fanned out, or
        waiting for a retry); 0 when there is none. Dead letters do not count."""
        age = await self.pg.fetchval(
            """SELECT extract(epoch FROM now() - least(
                   (SELECT min(created_at) FROM outbox WHERE fanned_at IS NULL),
                   (SELECT min(event_at) FROM deliveries
                    WHERE delivered_at IS NULL AND NOT dead)))::float8"""
        )
        return max(float(age or 0.0), 0.0)

    async def expire(self, max_age_s: float, overdue_s: float) -> int:
        """Dead-letter deliveries past `max_age_s` that nobody tried when they were due, for
        `overdue_s` since (a global endpoint no process is configured with any more). A queue
        that is worked on dead-letters its own after their last attempt: a failed delivery's
        last retry is due at its max age at the latest (see Dispatcher), so that none is
        dead-lettered here while a retry of it is still to come."""
        status = await self.pg.execute(
            """UPDATE deliveries d SET dead = true,
                   last_error = coalesce(d.last_error || '; ', '') || 'expired'
               WHERE d.delivered_at IS NULL AND NOT d.dead
                 AND d.created_at < now() - make_interval(secs => $1)
                 AND d.next_at < now() - make_interval(secs => $2)
                 AND NOT EXISTS (SELECT 1 FROM delivery_queues q
                                 WHERE q.sale_id = d.sale_id AND q.webhook_id = d.webhook_id
                                   AND q.url = d.url AND q.claim IS NOT NULL)""",
            max_age_s,
            overdue_s,
        )
        return int(status.split()[-1])

    async def forget(self, retention_s: float, limit: int) -> int:
        """Drop events older than `retention_s` that every endpoint got (or dead-lettered),
        with their deliveries, and queues left empty."""
        status = await self.pg.execute(
            """DELETE FROM outbox WHERE id IN (
                   SELECT o.id FROM outbox o
                   WHERE o.created_at < now() - make_interval(secs => $1)
                     AND o.fanned_at IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.entry_id = o.id
                                     AND d.delivered_at IS NULL AND NOT d.dead)
                   LIMIT $2)""",
            retention_s,
            limit,
        )
        await self.pg.execute(
            """DELETE FROM delivery_queues q
               WHERE q.next_at = 'infinity' AND q.claim IS NULL
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.sale_id = q.sale_id
                                 AND d.webhook_id = q.webhook_id AND d.url = q.url)"""
        )
        return int(status.split()[-1])
