"""Publish comments into a room's log at a steady rate: `flood.py REDIS_URL PREFIX ROOM RATE
SECONDS`. Prints how many were published. Run as its own process by the fan-out test."""

from __future__ import annotations

import asyncio
import sys
import time

from live.redis_client import open_redis
from rooms.events import Lane
from rooms.log import RoomLog

BATCH = 10  # publishes in flight at once


async def main(url: str, prefix: str, room: str, rate: float, seconds: float) -> int:
    client = open_redis(url, 10)
    log = RoomLog(client, prefix)
    sent = 0
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) - sent
            if due <= 0:
                await asyncio.sleep(0.002)
                continue
            batch = min(due, BATCH)
            await asyncio.gather(
                *(
                    log.publish(
                        room,
                        "comment",
                        {"id": f"f{sent + i}", "user": "fan", "text": "wow"},
                        lane=Lane.LOSSY,
                    )
                    for i in range(batch)
                )
            )
            sent += batch
    finally:
        await client.aclose()
    return sent


if __name__ == "__main__":
    url, prefix, room, rate, seconds = sys.argv[1:6]
    print(asyncio.run(main(url, prefix, room, float(rate), float(seconds))))
