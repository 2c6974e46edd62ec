"""Bids in PostgreSQL, the record a bid is acknowledged from and a lost Redis book is rebuilt
from (rebuild.py).

`record` writes, in one transaction, accepted bids (by seq), the answers of the calls that made
them (by idempotency field) and the auction's live figures after them (price, leader, the
leader's hidden maximum, deadline, extensions, seq, rev: only ever forward, by rev). It writes
only while the auction's `book_epoch` is the book that accepted them: a rebuild renews the
epoch under the auction row's lock (`take_over`), so a write of a replaced book that was in
flight commits before the rebuild reads, or not at all, and a seq is never given two bids: a
bid whose seq PostgreSQL has for another bid (a book that went back in time) is refused
(BookDiverged, and the book rebuilt), never dropped. A rebuild restores only the calls its
figures include (rev <= live_rev): a later call's bids may be missing. Every write is
idempotent: a retry, the catch-up copy and the bidder's write may all run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from flash_sales.auctions.book import Live, LoggedBid
from flash_sales.auctions.store import moment


class BookReplaced(Exception):
    """The book that accepted these bids (`epoch`) was replaced by a rebuild, or is not what
    PostgreSQL has (BookDiverged): they are not recorded, and an `ok` book of that epoch is
    to be rebuilt (`BookRebuild.rebuild(auction, replace=epoch)`)."""

    def __init__(self, message: str, epoch: str = "") -> None:
        super().__init__(message)
        self.epoch = epoch


class BookDiverged(BookReplaced):
    """The book is behind PostgreSQL (it went back in time under the same Redis run: a seq
    it gives was given to another bid, or its figures are older): it is rebuilt."""


class FenceLost(Exception):
    """A rebuild's fence was no longer its own when it came to name its book: it names none."""


@dataclass(frozen=True)
class Progress:
    """What PostgreSQL has of an open auction: the last seq, how many calls, the figures' rev
    and the book that may write."""

    seq: int
    calls: int
    rev: int
    epoch: str


@dataclass(frozen=True)
class Taken:
    """What a rebuild restores: the auction's figures as PostgreSQL has them, the last seq
    recorded, and every accepted call's answer."""

    price_cents: int | None
    leader: str | None
    leader_name: str | None
    leader_max_cents: int
    seq: int
    rev: int
    extensions: int
    started_at: datetime | None
    ends_at: datetime | None
    calls: list[tuple[str, str]]


class BidLedger:
    def __init__(self, pg: asyncpg.Pool) -> None:
        self.pg = pg

    async def record(
        self,
        auction_id: int,
        live: Live,
        bids: Sequence[LoggedBid],
        calls: Sequence[tuple[str, int, str]] = (),
        *,
        figures: bool = True,
    ) -> None:
        """Record `bids` and `calls` ((field, rev, answer)) accepted by the book `live.epoch`,
        and (with `figures`) `live`'s figures if newer; raises BookReplaced when that book is
        no more."""
        async with self.pg.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT true FROM auctions WHERE id = $1 AND book_epoch = $2 FOR UPDATE",
                auction_id,
                live.epoch,
            )
            if not found:
                raise BookReplaced(
                    f"auction {auction_id}: book {live.epoch!r} was replaced", live.epoch
                )
            if bids:
                # A seq given twice (the book went back in time) is refused, never dropped:
                # an identical row is the same bid written again (idempotent).
                clash = await conn.fetchval(
                    """SELECT b.seq FROM auction_bids b
                       JOIN unnest($2::int[], $3::text[], $4::int[]) AS n(seq, bidder, amount)
                         ON b.seq = n.seq
                       WHERE b.auction_id = $1
                         AND (b.bidder_id <> n.bidder OR b.amount_cents <> n.amount)
                       LIMIT 1""",
                    auction_id,
                    [b.seq for b in bids],
                    [b.bidder for b in bids],
                    [b.amount_cents for b in bids],
                )
                if clash is not None:
                    raise BookDiverged(
                        f"auction {auction_id}: seq {clash} was given to another bid", live.epoch
                    )
                await conn.execute(
                    """INSERT INTO auction_bids (auction_id, seq, bidder_id, amount_cents, proxy,
                                                 accepted_at)
                       SELECT $1, * FROM unnest($2::int[], $3::text[], $4::int[], $5::bool[],
                                                $6::timestamptz[])
                       ON CONFLICT (auction_id, seq) DO NOTHING""",
                    auction_id,
                    [b.seq for b in bids],
                    [b.bidder for b in bids],
                    [b.amount_cents for b in bids],
                    [b.proxy for b in bids],
                    [moment(b.ts_ms) for b in bids],
                )
            if calls:
                await conn.execute(
                    """INSERT INTO auction_calls (auction_id, field, rev, answer)
                       SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[])
                       ON CONFLICT (auction_id, field)
                       DO UPDATE SET rev = excluded.rev, answer = excluded.answer
                       WHERE auction_calls.answer IS DISTINCT FROM excluded.answer""",
                    auction_id,
                    [c[0] for c in calls],
                    [c[1] for c in calls],
                    [c[2] for c in calls],
                )
            if not figures:
                return
            await conn.execute(
                """UPDATE auctions SET price_cents = $2, leader_id = $3, leader_name = $4,
                          leader_max_cents = $5, bid_count = $6, extensions = $7, ends_at = $8,
                          live_rev = $9
                   WHERE id = $1 AND state = 'open' AND live_rev <= $9""",
                auction_id,
                live.price_cents,
                live.leader,
                live.leader_name,
                live.leader_max_cents or None,
                live.bids,
                live.extensions,
                moment(live.ends_at_ms),
                live.rev,
            )

    async def take_over(
        self, auction_id: int, epoch: str, fenced: Callable[[], Awaitable[bool]]
    ) -> Taken | None:
        """Name `epoch` the auction's book (no write of an earlier book commits after this)
        and read what it restores; None unless the auction is open. `fenced()` is asked under
        the auction row's lock: a rebuild whose fence is no longer its own (its lease ran out,
        another rebuild fenced and may have finished) names nothing (FenceLost), so a late
        take-over never orphans a newer book; a later rebuild's take-over waits for this one."""
        async with self.pg.acquire() as conn, conn.transaction():
            locked = await conn.fetchval(
                "SELECT true FROM auctions WHERE id = $1 AND state = 'open' FOR UPDATE",
                auction_id,
            )
            if not locked:
                return None
            if not await fenced():
                raise FenceLost(f"auction {auction_id}: the fence of {epoch!r} is gone")
            row = await conn.fetchrow(
                """UPDATE auctions SET book_epoch = $2 WHERE id = $1
                   RETURNING price_cents, leader_id, leader_name, leader_max_cents, bid_count,
                             live_rev, extensions, started_at, ends_at""",
                auction_id,
                epoch,
            )
            assert row is not None
            seq = await conn.fetchval(
                "SELECT coalesce(max(seq), 0) FROM auction_bids WHERE auction_id = $1", auction_id
            )
            # Only calls the figures include: a later one's bids may not be here (its write
            # failed), and a replay of it must not answer for a bid the book lacks.
            calls = await conn.fetch(
                "SELECT field, answer FROM auction_calls WHERE auction_id = $1 AND rev <= $2 "
                "ORDER BY rev",
                auction_id,
                row["live_rev"],
            )
        return Taken(
            price_cents=row["price_cents"],
            leader=row["leader_id"],
            leader_name=row["leader_name"],
            leader_max_cents=row["leader_max_cents"] or row["price_cents"] or 0,
            seq=max(int(seq), row["bid_count"]),
            rev=row["live_rev"],
            extensions=row["extensions"],
            started_at=row["started_at"],
            ends_at=row["ends_at"],
            calls=[(c["field"], c["answer"]) for c in calls],
        )

    async def recorded_seq(self, auction_id: int) -> int:
        """The last seq recorded of the auction."""
        return (await self.progress(auction_id)).seq

    async def count_calls(self, auction_id: int) -> int:
        return (await self.progress(auction_id)).calls

    async def progress(self, auction_id: int) -> Progress:
        """What PostgreSQL has of the auction (see Progress)."""
        return (await self.progress_of([auction_id])).get(auction_id) or Progress(0, 0, 0, "")

    async def progress_of(self, auction_ids: Sequence[int]) -> dict[int, Progress]:
        """Progress of many auctions in one query (the books' check)."""
        rows = await self.pg.fetch(
            """SELECT a.id, a.live_rev, coalesce(a.book_epoch, '') AS epoch,
                      (SELECT coalesce(max(seq), 0) FROM auction_bids b
                       WHERE b.auction_id = a.id) AS seq,
                      (SELECT count(*) FROM auction_calls c WHERE c.auction_id = a.id) AS calls
               FROM auctions a WHERE a.id = any($1::bigint[])""",
            list(auction_ids),
        )
        return {
            r["id"]: Progress(int(r["seq"]), int(r["calls"]), r["live_rev"], r["epoch"])
            for r in rows
        }

    async def bids(self, auction_id: int, limit: int = 10_000) -> list[LoggedBid]:
        rows = await self.pg.fetch(
            """SELECT seq, bidder_id, amount_cents, proxy, accepted_at FROM auction_bids
               WHERE auction_id = $1 ORDER BY seq LIMIT $2""",
            auction_id,
            limit,
        )
        return [
            LoggedBid(
                r["seq"],
                r["bidder_id"],
                r["amount_cents"],
                r["proxy"],
                int(r["accepted_at"].timestamp() * 1000),
            )
            for r in rows
        ]
