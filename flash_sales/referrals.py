"""Share links' referrals: who shared a room, whom their links brought (visits), the orders and
revenue attributed to each sharer, and the reward a room's rule would pay (nothing is paid here).

- A viewer of a room asks for its share code (the edge signs it; `share` records the sharer).
- A visit: someone opens the room with a sharer's code. A signed-in viewer's visit is recorded
  once per room: the first sharer whose link they opened wins, later links change nothing. The
  sharer's own visits, and those of hosts, moderators and services (not the audience), are not
  recorded. An anonymous viewer's fresh connection counts as a visit of the sharer, but nothing
  they do can be attributed.
- Attribution: every order a viewer places in a room after their visit carries the sharer as
  `orders.referrer_id`, filled by the INSERT of the order itself (`referrer_sql`): no extra round
  trip, and no order ever written without it.
- The report: per sharer, visits, orders, revenue and the reward of the room's rule (a percent of
  the attributed revenue, in integer cents rounded down).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg

from rooms.actors import Action, Actor, Role, authorize
from rooms.errors import Forbidden, invalid, not_found

MAX_SHARERS = 1000  # in one report, those of most revenue first
MAX_PERCENT = 100
MAX_COUNTED_LINKS = 10_000  # (room, sharer) pairs whose anonymous visits wait for one write


def referrer_sql(room: str, buyer: str) -> str:
    """The SQL expression of a buyer's referrer in a room (NULL without a visit), for the INSERT
    of an order: `room` and `buyer` are SQL expressions of the statement."""
    return (
        "(SELECT rv.sharer_id FROM referral_visits rv "
        f"WHERE rv.room_id = {room} AND rv.viewer_id = {buyer})"
    )


def reward_cents(revenue_cents: int, percent: int | None) -> int:
    """What a rule of `percent` pays on `revenue_cents`: integer cents, rounded down."""
    return 0 if percent is None else revenue_cents * percent // 100


_SHARE = """
WITH room AS (SELECT id FROM rooms WHERE id = $1),
added AS (
    INSERT INTO referral_codes (room_id, sharer_id) SELECT id, $2 FROM room
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM room
"""
_VISIT = """
INSERT INTO referral_visits (room_id, viewer_id, sharer_id)
SELECT room_id, $2, sharer_id FROM referral_codes WHERE room_id = $1 AND sharer_id = $3
ON CONFLICT (room_id, viewer_id) DO NOTHING
"""
_ANONYMOUS_VISITS = """
UPDATE referral_codes c SET anonymous_visits = c.anonymous_visits + v.n
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (room_id, sharer_id, n)
WHERE c.room_id = v.room_id AND c.sharer_id = v.sharer_id
"""
_RULE = """
SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1) AS known,
       (SELECT percent FROM referral_rules WHERE room_id = $1) AS percent
"""
_SET_RULE = """
INSERT INTO referral_rules (room_id, percent) SELECT id, $2 FROM rooms WHERE id = $1
ON CONFLICT (room_id) DO UPDATE SET percent = EXCLUDED.percent, updated_at = now()
RETURNING percent
"""
# An order is of a room through its sale (flash and group deals) or its auction.
_REPORT = """
WITH sharers AS (
    SELECT sharer_id, anonymous_visits FROM referral_codes WHERE room_id = $1
), visits AS (
    SELECT sharer_id, count(*) AS visits FROM referral_visits WHERE room_id = $1
    GROUP BY sharer_id
), sold AS (
    SELECT o.referrer_id AS sharer_id, count(*) AS orders, sum(o.total_cents) AS revenue
    FROM orders o
    LEFT JOIN sales s ON s.id = o.sale_id
    LEFT JOIN auctions a ON a.id = o.auction_id
    WHERE o.referrer_id IN (SELECT sharer_id FROM sharers)
      AND coalesce(s.room_id, a.room_id) = $1
    GROUP BY o.referrer_id
)
SELECT sh.sharer_id, sh.anonymous_visits::bigint AS anonymous_visits,
       coalesce(v.visits, 0)::bigint AS visits, coalesce(sold.orders, 0)::bigint AS orders,
       coalesce(sold.revenue, 0)::bigint AS revenue
FROM sharers sh LEFT JOIN visits v USING (sharer_id) LEFT JOIN sold USING (sharer_id)
ORDER BY revenue DESC, coalesce(v.visits, 0) + sh.anonymous_visits DESC, sh.sharer_id
LIMIT $2
"""


class Referrals:
    def __init__(self, pg: asyncpg.Pool, timeout_s: float) -> None:
        self.pg = pg
        self.timeout_s = timeout_s
        # Anonymous visits, counted here and written together (`write_anonymous_visits`): a
        # viral link must not be a write per connect on one hot row, beside the orders' writes.
        self._anonymous: Counter[tuple[str, str]] = Counter()

    async def share(self, room: str, actor: Actor) -> None:
        """Record `actor` as a sharer of `room` (again: nothing more); only a viewer of the room
        shares it (its staff would refer their own audience)."""
        if actor.room != room:
            raise Forbidden("forbidden", "this token is for another room")
        if actor.role is not Role.VIEWER:
            raise Forbidden("forbidden", "only a viewer of this room may share it")
        async with asyncio.timeout(self.timeout_s):
            found = await self.pg.fetchval(_SHARE, room, actor.user)
        if not found:
            raise not_found(f"no room {room!r}")

    async def visit(self, room: str, viewer: Actor | None, sharer: str, *, fresh: bool) -> bool:
        """A visit of `room` through `sharer`'s link (the code already verified for this room);
        `viewer` None: anonymous, counted only on a `fresh` connection (not on a resume). True
        when the visit was recorded: the viewer's first through any link, or an anonymous one."""
        if viewer is None:
            link = (room, sharer)
            if not fresh or (
                link not in self._anonymous and len(self._anonymous) >= MAX_COUNTED_LINKS
            ):
                return False
            self._anonymous[link] += 1
            return True
        if viewer.room != room or viewer.role is not Role.VIEWER or viewer.user == sharer:
            return False
        async with asyncio.timeout(self.timeout_s):
            status = await self.pg.execute(_VISIT, room, viewer.user, sharer)
        return status == "INSERT 0 1"

    async def write_anonymous_visits(self) -> None:
        """Add the anonymous visits counted since the last call to their sharers' codes, in
        one statement (a loop of the gateway's, every second); kept for the next call if it
        fails. A link whose code was never asked for counts nothing."""
        counted, self._anonymous = self._anonymous, Counter()
        if not counted:
            return
        rooms, sharers = zip(*counted, strict=True)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.pg.execute(_ANONYMOUS_VISITS, rooms, sharers, list(counted.values()))
        except BaseException:
            self._anonymous.update(counted)
            raise

    async def set_rule(self, room: str, actor: Actor, percent: int) -> dict[str, Any]:
        """The room's reward rule: `percent` (0-100) of each sharer's attributed revenue."""
        authorize(actor, room, Action.MANAGE_ROOM)
        if not 0 <= percent <= MAX_PERCENT:
            raise invalid(f"percent must be an integer from 0 to {MAX_PERCENT}")
        async with asyncio.timeout(self.timeout_s):
            stored = await self.pg.fetchval(_SET_RULE, room, percent)
        if stored is None:
            raise not_found(f"no room {room!r}")
        return {"room": room, "rule": {"percent": stored}}

    async def report(self, room: str, actor: Actor) -> dict[str, Any]:
        """The room's sharers, most revenue first (at most MAX_SHARERS): visits (signed-in and
        anonymous: this process's counts written first, other processes' within a second),
        orders, revenue attributed, and the reward the rule would pay."""
        authorize(actor, room, Action.MANAGE_ROOM)
        await self.write_anonymous_visits()
        async with asyncio.timeout(self.timeout_s), self.pg.acquire() as conn:
            rule = await conn.fetchrow(_RULE, room)
            assert rule is not None
            if not rule["known"]:
                raise not_found(f"no room {room!r}")
            rows = await conn.fetch(_REPORT, room, MAX_SHARERS)
        percent: int | None = rule["percent"]
        return {
            "room": room,
            "rule": None if percent is None else {"percent": percent},
            "sharers": [
                {
                    "sharer": r["sharer_id"],
                    "visits": r["visits"] + r["anonymous_visits"],
                    "anonymous_visits": r["anonymous_visits"],
                    "orders": r["orders"],
                    "revenue_cents": r["revenue"],
                    "reward_cents": reward_cents(r["revenue"], percent),
                }
                for r in rows
            ],
        }
