"""`AuctionBook`: the live side of auctions in Redis, one atomic Lua call per change (lua/),
each timed by the Redis server's clock and replay-safe: open, bid, close, peek, the log of
accepted bids, and the fence and restore of a rebuild from PostgreSQL (rebuild.py).

A book takes bids only under the Redis run id it was opened or rebuilt under (`Live.book`):
after a restart, a restored snapshot or a failover it is `stale` until rebuilt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flash_sales.auctions.keys import AuctionKeys
from flash_sales.auctions.model import AuctionConfig, encode_bands
from flash_sales.auctions.scripts import ScriptName, load
from rooms.scripts import Client

LOG_PAGE = 1000  # bids per read of the log
ENDED_KEYS_TTL_MS = 600_000  # an ended auction's keys go this long after the end


@dataclass(frozen=True)
class LoggedBid:
    """An accepted bid, as the server logged it: `proxy` when the server made it for a
    bidder's hidden maximum."""

    seq: int
    bidder: str
    amount_cents: int
    proxy: bool
    ts_ms: int


@dataclass(frozen=True)
class Live:
    """The auction as a script answered it. `code`: what the call did or why not (`opened`,
    `exists`, `accepted`, `too_low`, `own_bid`, `ended`, `not_open`, `not_due`, `unknown`,
    `invalid`, `stale`, `fenced`, or the state for a peek); the rest is absent (zero, None) for
    `unknown`, `not_open`, `stale`, `fenced` and `invalid`. `leader_max` is never shown;
    `rev` counts accepted bid calls, `epoch` names the book in PostgreSQL; `book`: a peek's
    `ok`, `stale` or `fenced`."""

    code: str
    state: str = ""
    price_cents: int | None = None
    leader: str | None = None
    leader_name: str | None = None
    ends_at_ms: int = 0
    extensions: int = 0
    bids: int = 0
    started_at_ms: int = 0
    ended_at_ms: int = 0
    min_next_cents: int = 0
    leader_max_cents: int = 0
    rev: int = 0
    epoch: str = ""
    book: str = ""


@dataclass(frozen=True)
class BidAnswer:
    live: Live
    accepted: bool = False
    leading: bool = False
    extended: bool = False
    outbid: str | None = None  # the bidder this bid took the lead from
    entries: tuple[LoggedBid, ...] = ()  # the bids it logged, in seq order
    replay: bool = False
    field: str = ""  # the idempotency record's field of an accepted call
    raw: str = ""  # the script's answer as Redis keeps it


class AuctionBook:
    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        names: tuple[ScriptName, ...] = ("open", "bid", "close", "peek", "fence", "restore")
        self._scripts = {name: load(client, name) for name in names}

    def keys(self, auction_id: int) -> AuctionKeys:
        return AuctionKeys.of(self.prefix, auction_id)

    async def open(self, auction_id: int, config: AuctionConfig, epoch: str) -> Live:
        """Open now for `config.duration_ms` by the server's clock, as the book PostgreSQL
        names `epoch`; `exists` when it was."""
        args = [
            config.start_cents,
            encode_bands(config.bands),
            config.duration_ms,
            config.snipe_window_ms,
            config.max_extensions,
            config.reserve_cents or 0,
            epoch,
        ]
        return _live(await self._call("open", auction_id, args))

    async def bid(
        self,
        auction_id: int,
        bidder: str,
        name: str,
        amount_cents: int,
        max_cents: int | None,
        idempotency_key: str,
    ) -> BidAnswer:
        args: list[str | int] = [bidder, name, amount_cents, max_cents or 0, idempotency_key]
        raw = await self._scripts["bid"](keys=self.keys(auction_id).all, args=args)
        reply: dict[str, Any] = json.loads(raw)
        entries = reply.get("entries") or []  # cjson writes an empty list as {}
        return BidAnswer(
            _live(reply),
            accepted=bool(reply.get("accepted")),
            leading=bool(reply.get("leading")),
            extended=bool(reply.get("extended")),
            outbid=reply.get("outbid") or None,
            entries=tuple(_entry(e) for e in entries),
            replay=bool(reply.get("replay")),
            field=reply.get("field", ""),
            raw=raw.decode() if isinstance(raw, bytes) else raw,
        )

    async def close(self, auction_id: int, *, now: bool = False) -> Live:
        """End at the deadline (`not_due` before it), or `now` (a stop); `unknown` if absent,
        `stale`/`fenced` until rebuilt. The ended book's keys expire ENDED_KEYS_TTL_MS later."""
        args = ["1" if now else "0", ENDED_KEYS_TTL_MS]
        return _live(await self._call("close", auction_id, args))

    async def peek(self, auction_id: int) -> Live:
        return _live(await self._call("peek", auction_id, []))

    async def log(self, auction_id: int, after_seq: int, upto_seq: int) -> list[LoggedBid]:
        """Accepted bids with `after_seq` < seq <= `upto_seq`, at most LOG_PAGE, in seq order
        (a rebuilt book's log starts after the seq it was rebuilt at: `log_base`)."""
        keys = self.keys(auction_id)
        base = int(await self.client.hget(keys.state, "log_base") or 0)
        start = max(after_seq - base, 0)
        last = min(upto_seq - base, start + LOG_PAGE) - 1
        if last < start:
            return []
        bids = [_logged(item) for item in await self.client.lrange(keys.log, start, last)]
        return [b for b in bids if after_seq < b.seq <= upto_seq]

    async def calls(self, auction_id: int) -> dict[str, str]:
        """Every accepted call's answer, by idempotency field (for the catch-up copy)."""
        raw = await self.client.hgetall(self.keys(auction_id).idem)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def count_calls(self, auction_id: int) -> int:
        return int(await self.client.hlen(self.keys(auction_id).idem))

    async def fence(self, auction_id: int, token: str, lease_ms: int, replace: str = "") -> str:
        """`fenced` (no bids until `restore(..., finish=True)` or the lease ends), `busy`
        (another rebuild's), or `ok` (the book is up to date: nothing to rebuild). `replace`:
        an `ok` book of this epoch is fenced too (PostgreSQL found it replaced or behind)."""
        args = [token, lease_ms, replace]
        return str((await self._call("fence", auction_id, args))["code"])

    async def holds_fence(self, auction_id: int, token: str) -> bool:
        """Whether this rebuild's fence is still its own and within its lease (a restore
        step that restores nothing)."""
        return (await self.restore(auction_id, token, None, [], finish=False)).code == "restored"

    async def restore(
        self,
        auction_id: int,
        token: str,
        state: dict[str, str] | None,
        calls: Sequence[tuple[str, str]],
        *,
        finish: bool,
    ) -> Live:
        """One step of a rebuild under this fence (see lua/restore.lua); `lost` if not ours."""
        args: list[str] = [token, "1" if finish else "0", json.dumps(state) if state else ""]
        args += [x for call in calls for x in call]
        return _live(await self._call("restore", auction_id, args))

    async def drop(self, auction_id: int) -> None:
        await self.client.unlink(*self.keys(auction_id).all)

    async def _call(self, name: ScriptName, auction_id: int, args: list[Any]) -> dict[str, Any]:
        reply = await self._scripts[name](keys=self.keys(auction_id).all, args=args)
        decoded: dict[str, Any] = json.loads(reply)
        return decoded


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _live(reply: dict[str, Any]) -> Live:
    price = int(reply.get("price") or 0)
    return Live(
        code=reply["code"],
        state=reply.get("state", ""),
        price_cents=price or None,
        leader=reply.get("leader") or None,
        leader_name=reply.get("leader_name") or None,
        ends_at_ms=int(reply.get("ends_at", 0)),
        extensions=int(reply.get("extensions", 0)),
        bids=int(reply.get("bids", 0)),
        started_at_ms=int(reply.get("started_at", 0)),
        ended_at_ms=int(reply.get("ended_at", 0)),
        min_next_cents=int(reply.get("min_next", 0)),
        leader_max_cents=int(reply.get("leader_max", 0)),
        rev=int(reply.get("rev", 0)),
        epoch=str(reply.get("epoch") or ""),
        book=str(reply.get("book", "")),
    )


def _entry(raw: dict[str, Any]) -> LoggedBid:
    return LoggedBid(
        int(raw["seq"]), raw["bidder"], int(raw["amount"]), bool(raw["proxy"]), int(raw["ts"])
    )


def _logged(raw: bytes | str) -> LoggedBid:
    seq, amount, proxy, ts, bidder = _text(raw).split("|", 4)
    return LoggedBid(int(seq), bidder, int(amount), proxy == "1", int(ts))
