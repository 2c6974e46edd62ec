"""The WebSocket buyers of bench/burst.py, a process of their own: many raw WebSocket
connections in one asyncio loop, each signed in as one buyer, each sending the protocol's `buy`
(or `confirm`) messages pipelined, in bursts of at most WS_BURST per second (the protocol allows
a connection 20 messages a second), every answer matched to its message by `ref`.

    python bench/burst_ws.py JOB.json   (prints one JSON line: the result)

JOB: {"port", "room", "mode": "buy"|"confirm", "sale", "tokens": [...], "seconds", "max_ops",
"holds": {buyer index: [hold ids]} (confirm), "holds_out": path (buy: one `buyer<TAB>hold`
line per hold made)}. Connection i is buyer i (tokens[i]). Bounded: --seconds of sending, then
at most ANSWER_WAIT_S for the last answers; at most max_ops messages in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bids_edge_clients import ws_frame

WS_BURST = 18  # messages per connection and second, under the protocol's 20
ANSWER_WAIT_S = 10.0
CONNECT_TIMEOUT_S = 60.0


class Buyer(asyncio.Protocol):
    """One connection: the upgrade, then frames parsed as they arrive; answers matched by ref."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending: dict[str, tuple[float, str]] = {}  # ref: (sent at, what was sent)
        self.drained = asyncio.Event()
        self.drained.set()  # nothing pending
        self.first_answer = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))
        self.result.lost += len(self.pending)
        self.pending.clear()
        self.drained.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(head.split(b"\r\n")[0].decode()))
                return
            self.upgraded.set_result(None)
        buffer = self.buffer
        while len(buffer) >= 2:
            n, start = buffer[1] & 0x7F, 2
            if n == 126:
                if len(buffer) < 4:
                    return
                n, start = int.from_bytes(buffer[2:4], "big"), 4
            elif n == 127:
                if len(buffer) < 10:
                    return
                n, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + n:
                return
            opcode, payload = buffer[0] & 0x0F, bytes(buffer[start : start + n])
            del buffer[: start + n]
            if opcode == 0x9 and self.transport is not None:
                self.transport.write(ws_frame(0xA, payload))
            elif opcode == 0x1:
                self.frame(payload)

    def frame(self, payload: bytes) -> None:
        if not payload.startswith((b'{"type":"reply"', b'{"type":"error"')):
            self.result.frames += 1
            return
        message = json.loads(payload)
        sent = self.pending.pop(str(message.get("ref")), None)
        if sent is None:
            return
        now = time.perf_counter()
        self.first_answer = self.first_answer or now
        self.result.last_answer = now
        self.result.latencies.append(now - sent[0])
        if message["ok"]:
            self.result.codes["ok"] += 1
            if self.result.mode == "buy":
                self.result.holds.append((self.result.buyer_of[id(self)], message["data"]["id"]))
        else:
            self.result.codes[str(message.get("error"))] += 1
        if not self.pending:
            self.drained.set()

    def send(self, messages: list[dict[str, Any]]) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        self.drained.clear()
        self.first_answer = 0.0
        frames = []
        for message in messages:
            self.pending[message["ref"]] = (now, message["type"])
            frames.append(ws_frame(0x1, json.dumps(message, separators=(",", ":")).encode()))
        self.transport.write(b"".join(frames))


class Result:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.latencies: list[float] = []
        self.codes: Counter[str] = Counter()
        self.holds: list[tuple[int, str]] = []
        self.buyer_of: dict[int, int] = {}
        self.frames = 0
        self.lost = 0
        self.sent = 0
        self.last_answer = 0.0


async def connect(job: dict[str, Any], result: Result, index: int) -> Buyer:
    loop = asyncio.get_running_loop()
    transport, buyer = await loop.create_connection(lambda: Buyer(result), "127.0.0.1", job["port"])
    result.buyer_of[id(buyer)] = index
    query = urlencode({"token": job["tokens"][index]})
    transport.write(
        f"GET /ws/rooms/{job['room']}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await buyer.upgraded
    return buyer


def messages(job: dict[str, Any], index: int, count: int, made: int) -> list[dict[str, Any]]:
    if job["mode"] == "buy":
        return [
            {
                "type": "buy",
                "ref": str(made + k),
                "sale_id": job["sale"],
                "qty": 1,
                "idempotency_key": f"ws-{index}-{made + k}",
            }
            for k in range(count)
        ]
    holds = job["holds"].get(str(index), [])[made : made + count]
    return [
        {
            "type": "confirm",
            "ref": str(made + k),
            "reservation_id": hold,
            "payment_ref": f"p-{hold}",
        }
        for k, hold in enumerate(holds)
    ]


async def drive(job: dict[str, Any], result: Result, buyer: Buyer, index: int, end: float) -> None:
    """Bursts of WS_BURST messages, the next one a second after the first answer of the last
    (so the server's one-second window of this connection has passed)."""
    made = 0
    await asyncio.sleep(random.random())  # spread the connections' bursts over a second
    while time.perf_counter() < end and result.sent < job["max_ops"]:
        batch = messages(job, index, min(WS_BURST, job["max_ops"] - result.sent), made)
        if not batch:
            return
        buyer.send(batch)
        made += len(batch)
        result.sent += len(batch)
        try:
            await asyncio.wait_for(buyer.drained.wait(), max(0.1, end - time.perf_counter()))
        except TimeoutError:
            return
        wait = buyer.first_answer + 1.0 - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(min(wait, max(0.0, end - time.perf_counter())))


async def run(job: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    result = Result(job["mode"])
    count = len(job["tokens"])
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        buyers = []
        for start in range(0, count, 200):  # connect in waves: the server's accept queue
            wave = range(start, min(count, start + 200))
            buyers += await asyncio.gather(*(connect(job, result, i) for i in wave))
    await asyncio.sleep(0.5)  # the welcome and snapshot frames
    result.frames = 0
    started = time.perf_counter()
    end = started + job["seconds"]
    await asyncio.gather(*(drive(job, result, b, i, end) for i, b in enumerate(buyers)))
    with contextlib.suppress(TimeoutError):  # the last answers, if they come in time
        async with asyncio.timeout(ANSWER_WAIT_S):
            for buyer in buyers:
                await buyer.drained.wait()
    seconds = max(result.last_answer, end) - started
    unanswered = sum(len(b.pending) for b in buyers) + result.lost
    for buyer in buyers:
        if buyer.transport is not None:
            buyer.transport.close()
    ms = sorted(result.latencies)
    quantiles = statistics.quantiles(ms, n=100) if len(ms) > 1 else [float("nan")] * 99
    summary = {
        "answered": len(ms),
        "seconds": seconds,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "codes": dict(result.codes),
        "frames": result.frames,
        "unanswered": unanswered,
        "connections": count,
    }
    return summary, result.holds


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    summary, holds = asyncio.run(run(job))
    if job.get("holds_out"):
        Path(job["holds_out"]).write_text("".join(f"{b}\t{hold}\n" for b, hold in holds))
    print(json.dumps(summary), flush=True)
