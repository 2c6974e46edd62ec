"""Redis restarted under a running gateway, on a redis-server of this test's own: the viewers stay
connected, the subscription comes back, and no critical event is lost (gaps filled from the
log). When Redis comes back without its data (a new log epoch), every viewer gets a snapshot and
then every new event."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from gateway_testkit import (
    Room,
    Viewer,
    close_all,
    eventually,
    make_room,
    open_viewers,
    serve,
    ws_url,
)

from live.embedded import EmbeddedRedis
from live.settings import Settings
from rooms.events import Lane
from rooms.log import RoomLog


class RestartableRedis:
    """An embedded redis-server (AOF on) that can be shut down and started again on its port."""

    def __init__(self, directory: Path) -> None:
        self.embedded = EmbeddedRedis(directory)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.embedded.url

    def start(self) -> None:
        self.embedded.start()

    def shutdown(self) -> None:
        """SHUTDOWN: the AOF is written before the server exits."""
        if self.process is None:
            self.embedded.stop()
            return
        with socket.create_connection(("127.0.0.1", self.embedded.port), timeout=5) as sock:
            sock.sendall(b"SHUTDOWN\r\n")
        self.process.wait(timeout=10)
        self.process = None

    def start_again(self, *, lose_data: bool = False) -> None:
        directory = self.embedded.directory
        if lose_data:  # the AOF (a folder since Redis 7 / Valkey) and any RDB
            shutil.rmtree(directory / "appendonlydir", ignore_errors=True)
            for aof in [*directory.glob("appendonly*"), *directory.glob("*.rdb")]:
                if aof.is_file():
                    aof.unlink()
        self.process = subprocess.Popen(
            [str(EmbeddedRedis.binary()), str(directory / "redis.conf")],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.embedded._ping():
            assert self.process.poll() is None, "redis-server did not start again"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.02)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.shutdown()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


async def _pin(room: Room, product: int) -> tuple[str, int]:
    """Pin through the API, retrying while Redis comes back; the event's (epoch, seq)."""
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                published = await room.pin(product)
                return str(published["epoch"]), int(published["seq"])
            await asyncio.sleep(0.05)


async def _received(viewers: list[Viewer], epoch: str, seq: int, within: float = 10) -> None:
    await eventually(lambda: all(v.epoch == epoch and v.seq >= seq for v in viewers), within)


async def test_redis_restart_loses_no_critical_event(
    settings: Settings, own_redis: RestartableRedis
) -> None:
    settings = replace(settings, redis_url=own_redis.url)
    async with serve(settings, catch_up_interval_s=5.0) as served:
        room = await make_room(served.url, settings)
        viewers = await open_viewers(ws_url(served.url, room.id), 10)
        gateway = served.gateway
        channel = RoomLog(gateway.rooms.redis, settings.redis_prefix).keys(room.id).channel
        epoch, seq = await _pin(room, room.products[0])
        pins = [seq]
        await _received(viewers, epoch, pins[-1])
        reconnects = gateway.subscriber.reconnects

        await asyncio.to_thread(own_redis.shutdown)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(own_redis.start_again)
        # Published at once, before the gateway is back on pub/sub: found by the gap fill.
        async with aioredis.Redis.from_url(own_redis.url) as direct:
            log = RoomLog(direct, settings.redis_prefix)
            for n in range(3):
                message = {"text": f"while away {n}", "by": "host", "role": "host"}
                published = await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)
                assert published.epoch == epoch  # the AOF kept the log
                pins.append(published.seq)
            pins.append((await _pin(room, room.products[1]))[1])
            await _received(viewers, epoch, pins[-1])
            await eventually(lambda: gateway.subscriber.reconnects > reconnects)
            numsub = dict(await direct.pubsub_numsub(channel))
            assert numsub[channel.encode()] == 1  # subscribed again
            # Events arrive through pub/sub again.
            pins.append((await _pin(room, room.products[0]))[1])
            await _received(viewers, epoch, pins[-1], within=2)
        for viewer in viewers:
            critical = [e["seq"] for e in viewer.critical()]
            assert critical == pins
            assert viewer.disorder == 0 and viewer.stale == 0
            assert viewer.snapshots == 1 and viewer.close_code is None

        # Redis comes back empty: a new epoch. Viewers get a snapshot, then every new event.
        await asyncio.to_thread(own_redis.shutdown)
        await asyncio.to_thread(own_redis.start_again, lose_data=True)
        after = [await _pin(room, room.products[n % 2]) for n in range(3)]
        new_epoch = after[0][0]
        assert new_epoch != epoch and all(e == new_epoch for e, _ in after)
        await _received(viewers, new_epoch, after[-1][1])
        for viewer in viewers:
            assert viewer.snapshots == 2 and viewer.close_code is None
            new = [e["seq"] for e in viewer.applied if e["epoch"] == new_epoch]
            expected = [s for _, s in after if s > viewer.snapshot_seq]
            assert [s for s in new if s in {s for _, s in after}] == expected
            assert viewer.disorder == 0
        await close_all(viewers)
