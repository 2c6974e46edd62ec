"""The room's workload: which event comes when, its fields, and the loop that publishes it at the
rate asked for, recording the publish time (`pt`) every viewer's lag is measured against. Also
the MessagePack subset and envelope the peers' Redis adapters need."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rooms.events import Lane

COMMENTS = (
    "is this available in medium?",
    "love the colour, just ordered one!!",
    "how long does shipping take to Lisbon",
    "can you show the back of the jacket please",
    "price drop when? asking for a friend",
    "that fabric looks so soft",
)


@dataclass(frozen=True)
class Workload:
    rate: float
    pin_every_s: float

    @property
    def pin_period(self) -> int:
        return max(1, round(self.rate * self.pin_every_s))

    def kind(self, i: int) -> str:
        if i % self.pin_period == 0:
            return "pinned"
        return "stock" if i % 5 == 1 else "comment"

    @staticmethod
    def route(kind: str) -> tuple[Lane, str]:
        """The lane and merge key the room's publishers give each kind of event."""
        if kind == "pinned":
            return Lane.CRITICAL, ""
        return (Lane.STATE, "stock:1") if kind == "stock" else (Lane.LOSSY, "")

    def data(self, kind: str, i: int, pt: float) -> dict[str, Any]:
        if kind == "pinned":
            product = 1 + (i // self.pin_period) % 12
            return {"pt": pt, "product_id": product, "title": f"Product {product}", "price": 1999}
        if kind == "stock":
            return {"pt": pt, "sale_id": 1, "remaining": max(0, 1_000_000 - i)}
        user = i % 997
        return {"pt": pt, "user": f"u{user}", "name": f"viewer {user}", "text": COMMENTS[i % 6]}


Publish = Callable[[str, int, dict[str, Any]], Awaitable[None]]


def msgpack(value: object) -> bytes:
    """The MessagePack subset the socket.io Redis adapter's messages need (notepack.io reads it)."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(value: object, out: bytearray) -> None:
    if value is None:
        out.append(0xC0)
    elif isinstance(value, bool):
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, int):
        if 0 <= value < 128:
            out.append(value)
        elif 0 <= value < 2**32:
            out += b"\xce" + struct.pack(">I", value)
        elif value >= 0:
            out += b"\xcf" + struct.pack(">Q", value)
        else:
            out += b"\xd3" + struct.pack(">q", value)
    elif isinstance(value, float):
        out += b"\xcb" + struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode()
        n = len(raw)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 256:
            out += bytes((0xD9, n))
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += raw
    elif isinstance(value, list | tuple):
        out += (
            bytes((0x90 | len(value),))
            if len(value) < 16
            else b"\xdd" + struct.pack(">I", len(value))
        )
        for item in value:
            _pack(item, out)
    elif isinstance(value, dict):
        out += (
            bytes((0x80 | len(value),))
            if len(value) < 16
            else b"\xdf" + struct.pack(">I", len(value))
        )
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise TypeError(f"cannot pack {type(value).__name__}")


def envelope(kind: str, i: int, data: dict[str, Any]) -> dict[str, Any]:
    """A peer's event, emitted as one message: the fields of a live room event on the wire
    (gateway/envelope.py: every lane and merge key of this workload is implied by its type), so
    the peers send the same bytes per event and only framing, sampling and conflation differ."""
    return {"seq": i + 1, "ts": int(float(data["pt"])), "type": kind, "data": data}


@dataclass
class Published:
    sent: int = 0
    in_window: int = 0
    pins_in_window: int = 0
    window_s: float = 0.0
    slowest_ms: float = 0.0

    @property
    def rate(self) -> float:
        """Events published per second in the window."""
        return self.in_window / self.window_s if self.window_s else math.nan


async def publish_loop(
    publish: Publish, workload: Workload, start: float, t0: float, t1: float
) -> Published:
    """Publish event i at start + i/rate until t1 (bounded by the count that fits)."""
    done = Published(window_s=t1 - t0)
    limit = math.ceil((t1 - start) * workload.rate) + 1
    for i in range(limit):
        at = start + i / workload.rate
        if at >= t1:
            break
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = workload.kind(i)
        now = time.time()
        began = time.perf_counter()
        await publish(kind, i, workload.data(kind, i, round(now * 1000, 3)))
        done.slowest_ms = max(done.slowest_ms, (time.perf_counter() - began) * 1000)
        done.sent += 1
        if t0 <= now < t1:
            done.in_window += 1
            done.pins_in_window += kind == "pinned"
    return done
