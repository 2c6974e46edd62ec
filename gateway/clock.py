"""The server's clock as the protocol states it: Redis `TIME`, the clock every event's `ts` and
the snapshot's `server_time_ms` come from, so a client that syncs to a ping measures lag against
the same clock. One process reads `TIME` at most every `refresh_s` and answers in between from
its own clock plus the offset it measured, so a ping costs no Redis round trip."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from rooms.scripts import Client

log = logging.getLogger("live.gateway")

REFRESH_S = 10.0
MEASURE_TIMEOUT_S = 1.0  # pings wait at most this long for a measure


class ServerClock:
    def __init__(self, redis: Client, refresh_s: float = REFRESH_S) -> None:
        self._redis = redis
        self._refresh_s = refresh_s
        self._offset_ms = 0.0  # Redis time - this process's time, as last measured
        self._measured_at = -float("inf")  # time.monotonic() of the last attempt
        self._lock = asyncio.Lock()

    async def now_ms(self) -> int:
        """Redis's time in ms. When Redis does not answer, the last offset stands (0 before the
        first answer) and the next attempt waits another `refresh_s`: a ping never fails for
        it."""
        if time.monotonic() - self._measured_at >= self._refresh_s:
            async with self._lock:
                if time.monotonic() - self._measured_at >= self._refresh_s:
                    await self._measure()
        return int(time.time() * 1000 + self._offset_ms)

    async def _measure(self) -> None:
        self._measured_at = time.monotonic()
        before = time.time()
        try:
            async with asyncio.timeout(MEASURE_TIMEOUT_S):
                seconds, micros = await self._redis.time()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("Redis TIME failed (%s); pings use the last known offset", exc)
            return
        after = time.time()
        self._offset_ms = seconds * 1000 + micros / 1000 - (before + after) * 500
