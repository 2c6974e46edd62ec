"""How a command's failure is answered over a real WebSocket: a failing store (Redis,
PostgreSQL, the network to them) is `unavailable` with `retry_after_s`, logged as a warning
without a traceback; anything else is `internal_error`, logged with its traceback. And the ping's
`ts` is Redis's clock, the one events carry."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from gateway_testkit import Viewer, make_room, serve, ws_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from live.settings import Settings
from rooms.actors import Actor

BUY = {"type": "buy", "sale_id": 1, "qty": 1, "idempotency_key": "k"}


def _failing(error: BaseException) -> Any:
    async def handler(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        raise error

    return handler


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Error 111 connecting to redis"),
        RedisTimeoutError("Timeout reading from socket"),
        asyncpg.PostgresError("the database system is shutting down"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_store_failure_is_unavailable_with_retry_after(
    settings: Settings, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        served.gateway.handlers["buy"] = _failing(error)
        viewer = await Viewer.open(ws_url(served.url, room.id, token=room.viewer_token("ann")))
        with caplog.at_level(logging.WARNING, logger="live.gateway"):
            await viewer.send({**BUY, "ref": "b"})
            answer = await viewer.reply("b")
        assert answer["error"] == "unavailable" and answer["retry_after_s"] == 1.0
        failures = [r for r in caplog.records if "buy failed" in r.getMessage()]
        assert [(r.levelno, r.exc_info) for r in failures] == [(logging.WARNING, None)]
        await viewer.send({"type": "ping", "ref": "p"})
        assert (await viewer.reply("p"))["ok"]  # the connection stays up
        await viewer.close()


async def test_any_other_failure_is_internal_error_with_a_traceback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        served.gateway.handlers["buy"] = _failing(KeyError("a bug"))
        viewer = await Viewer.open(ws_url(served.url, room.id, token=room.viewer_token("ann")))
        with caplog.at_level(logging.WARNING, logger="live.gateway"):
            await viewer.send({**BUY, "ref": "b"})
            answer = await viewer.reply("b")
        assert answer["error"] == "internal_error" and "retry_after_s" not in answer
        failures = [r for r in caplog.records if "buy failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].levelno == logging.ERROR
        assert failures[0].exc_info is not None
        await viewer.close()


async def test_ping_answers_with_redis_time(settings: Settings, redis: aioredis.Redis) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        viewer = await Viewer.open(ws_url(served.url, room.id))
        for ref in ("p1", "p2"):  # the first measures the offset, the second uses it
            seconds, micros = await redis.time()
            before = seconds * 1000 + micros // 1000
            await viewer.send({"type": "ping", "ref": ref})
            ts = (await viewer.reply(ref))["data"]["ts"]
            seconds, micros = await redis.time()
            after = seconds * 1000 + micros // 1000
            assert before - 5 <= ts <= after + 5, (before, ts, after)
        await viewer.close()
