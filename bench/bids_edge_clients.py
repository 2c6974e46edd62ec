"""The bidders of bench/bids_edge.py, each one bid in flight at a time: raw HTTP/1.1 on one
keep-alive connection, the protocol's `bid` message on one WebSocket (paced to the protocol's
message limit, the room's frames counted), and the PostgreSQL row-lock UPDATE on a pool."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import asyncpg

ANSWER_TIMEOUT_S = 15.0
WS_MIN_GAP_S = 1 / 18  # the protocol allows 20 messages/s per connection
AT_LEAST = re.compile(r"at least (\d+)")


@dataclass
class Answer:
    accepted: bool
    code: str  # "accepted", or the error's code
    min_next: int | None  # the lowest bid taken now, when the answer says


class Bidder(Protocol):
    async def pace(self) -> None: ...  # until the bidder may send its next bid

    async def bid(self, auction: int, amount: int) -> Answer: ...


def answer_of(ok: bool, data: dict[str, Any]) -> Answer:
    if ok:
        return Answer(True, "accepted", int(data["min_next_cents"]))
    found = AT_LEAST.search(str(data.get("detail", "")))
    return Answer(False, str(data.get("error")), int(found.group(1)) if found else None)


class HttpBidder:
    """One keep-alive HTTP/1.1 connection, one bid at a time."""

    def __init__(self, port: int, name: str, token: str) -> None:
        self.port, self.name, self.token = port, name, token
        self.keys = itertools.count()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def pace(self) -> None:
        pass

    async def bid(self, auction: int, amount: int) -> Answer:
        assert self.reader is not None and self.writer is not None
        body = b'{"amount_cents":%d}' % amount
        self.writer.write(
            f"POST /api/auctions/{auction}/bids HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.token}\r\nIdempotency-Key: {self.name}-{next(self.keys)}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S)
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = json.loads(await self.reader.readexactly(length))
        return answer_of(head[9:12] == b"201", data)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame, masked with a zero key (the payload stays as it is)."""
    n = len(payload)
    size = bytes((0x80 | n,)) if n < 126 else bytes((0xFE,)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode,)) + size + b"\0\0\0\0" + payload


class WsBidder:
    """One WebSocket, one bid at a time, at most one every WS_MIN_GAP_S; room frames counted."""

    def __init__(self, port: int, room: str, name: str, token: str) -> None:
        self.port, self.room, self.name, self.token = port, room, name, token
        self.refs = itertools.count()
        self.frames = 0
        self.next_at = 0.0
        self.waiting: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        query = urlencode({"token": self.token})
        self.writer.write(
            f"GET /ws/rooms/{self.room}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1"))
        self.task = asyncio.create_task(self.read(reader))

    async def read(self, reader: asyncio.StreamReader) -> None:
        parts: list[bytes] = []
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first, second = await reader.readexactly(2)
                n = second & 0x7F
                if n >= 126:
                    n = int.from_bytes(await reader.readexactly(2 if n == 126 else 8), "big")
                payload = await reader.readexactly(n) if n else b""
                opcode = first & 0x0F
                if opcode == 0x9 and self.writer is not None:  # ping: pong
                    self.writer.write(ws_frame(0xA, payload))
                elif opcode == 0x8:
                    break
                elif opcode in (0x0, 0x1):
                    parts.append(payload)
                    if first & 0x80:
                        self.frame(b"".join(parts))
                        parts.clear()
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(ConnectionError("the WebSocket closed"))

    def frame(self, payload: bytes) -> None:
        if payload.startswith((b'{"type":"reply"', b'{"type":"error"')):
            message = json.loads(payload)
            if self.waiting is not None and message.get("ref") == self.waiting[0]:
                if not self.waiting[1].done():
                    self.waiting[1].set_result(message)
                return
        self.frames += 1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def pace(self) -> None:
        wait = self.next_at - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        self.next_at = time.perf_counter() + WS_MIN_GAP_S

    async def bid(self, auction: int, amount: int) -> Answer:
        if self.writer is None or self.task is None or self.task.done():
            raise ConnectionError("the WebSocket is closed")
        ref = str(next(self.refs))
        message = {
            "type": "bid",
            "ref": ref,
            "auction_id": auction,
            "amount_cents": amount,
            "idempotency_key": f"{self.name}-{ref}",
        }
        future = asyncio.get_running_loop().create_future()
        self.waiting = (ref, future)
        self.writer.write(ws_frame(0x1, json.dumps(message, separators=(",", ":")).encode()))
        frame = await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
        return answer_of(bool(frame["ok"]), frame.get("data") or frame)


class PgBidder:
    def __init__(self, pool: asyncpg.Pool, table: str) -> None:
        self.pool = pool
        self.statement = f"UPDATE {table} SET price = $1 WHERE id = 1 AND price < $1"

    async def pace(self) -> None:
        pass

    async def bid(self, auction: int, amount: int) -> Answer:
        status = await self.pool.execute(self.statement, amount, timeout=ANSWER_TIMEOUT_S)
        if status == "UPDATE 1":
            return Answer(True, "accepted", amount + 1)
        return Answer(False, "too_low", None)
