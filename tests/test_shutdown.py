"""One task group runs every background loop and one shutdown path ends them: a loop's failure
is logged and the loop goes on; shutdown steps are bounded, so one stuck or failing step never
keeps the next from running; viewers are closed with SERVICE_RESTART and waited for."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from serve_kit import serve_app
from websockets.asyncio.client import connect

from flash_sales.model import OrderRequest
from gateway.auth import mint
from gateway.protocol import CloseCode
from live import background, services
from live.background import Background
from live.settings import Settings
from rooms.actors import Role


async def test_a_stuck_step_is_cut_and_a_failing_one_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(services, "SHUTDOWN_STEP_S", 0.05)

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def failing() -> None:
        raise RuntimeError("planted")

    async def fine() -> None:
        await asyncio.sleep(0)

    async with asyncio.timeout(5):
        results = [
            await services.bounded("stuck", stuck()),
            await services.bounded("failing", failing()),
            await services.bounded("fine", fine()),
        ]
    assert results == [False, False, True]
    assert "stopping stuck took over" in caplog.text and "stopping failing failed" in caplog.text


async def test_a_failing_loop_is_logged_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug is logged with its traceback, a storage error as a warning; neither ends its loop
    or any other, and a long-running coroutine that ends is started again."""
    monkeypatch.setattr(background, "RESTART_S", 0.01)
    runs = {"bug": 0, "storage": 0, "fine": 0, "returns": 0}
    each_ran_thrice = asyncio.Event()

    def counted(name: str, error: Exception | None) -> Any:
        async def work() -> None:
            runs[name] += 1
            if min(runs.values()) >= 3:
                each_ran_thrice.set()
            if error is not None:
                raise error

        return work

    loops = Background()
    with caplog.at_level(logging.WARNING, logger="live.background"):
        await loops.start(
            [
                ("bug", 0.01, counted("bug", KeyError("planted"))),
                ("storage", 0.01, counted("storage", ConnectionError("redis away"))),
                ("fine", 0.01, counted("fine", None)),
                ("returns", None, counted("returns", None)),
            ]
        )
        try:
            async with asyncio.timeout(5):
                await each_ran_thrice.wait()
            assert loops.running == ["bug", "fine", "returns", "storage"]
        finally:
            await loops.stop()
    assert loops.running == []
    bugs = [r for r in caplog.records if r.getMessage() == "bug failed"]
    assert bugs and all(r.levelno == logging.ERROR and r.exc_info for r in bugs)
    storage = [r for r in caplog.records if r.getMessage().startswith("storage failed")]
    assert storage and all(r.levelno == logging.WARNING and not r.exc_info for r in storage)
    assert "returns ended; starting it again" in caplog.text
    assert "ended before the service stopped" not in caplog.text


async def test_a_loop_that_will_not_stop_is_cut_and_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(services, "SHUTDOWN_STEP_S", 0.1)
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # its clean-up outlasts the bound

    async def fine() -> None:
        await asyncio.sleep(0)

    loops = Background()
    await loops.start([("stubborn", None, stubborn), ("fine", 0.01, fine)])
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        assert await services.bounded("the background loops", loops.stop()) is False
    assert loops.running == ["stubborn"]  # the others are cancelled with the group
    assert "background loops still running: stubborn" in caplog.text
    assert "stopping the background loops took over" in caplog.text
    release.set()  # let it end, so the test's loop is left clean
    async with asyncio.timeout(5):
        await loops.stop()
    assert loops.running == []


async def test_the_app_runs_its_loops_and_closes_viewers_with_service_restart(
    settings: Settings,
) -> None:
    async with serve_app(settings) as served:
        loops: Background = served.app.state.background
        assert set(loops.running) >= {
            "gateway.subscriber",
            "gateway.catch_up",
            "sales.sweep_expired",
        }
        gateway = served.services.gateway
        api = served.url.replace("http://", "ws://", 1)
        host = mint(settings.jwt_secret, sub="h", role=Role.HOST, room="r")
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            made = await client.put(
                "/api/rooms/r", json={"title": "R"}, headers={"authorization": f"Bearer {host}"}
            )
            assert made.status_code == 200, made.text
        async with connect(f"{api}/ws/rooms/r") as viewer:
            assert json.loads(await viewer.recv())["type"] == "welcome"
            async with asyncio.timeout(5):
                await gateway.close_viewers()  # returns once the session has ended
            assert gateway.hubs == {}
            async with asyncio.timeout(5):
                await viewer.wait_closed()
            assert viewer.close_code == CloseCode.SERVICE_RESTART
        async with connect(f"{api}/ws/rooms/r") as late:  # refused: the process is stopping
            async with asyncio.timeout(5):
                await late.wait_closed()
            assert late.close_code == CloseCode.SERVICE_RESTART
        writer = served.services.sales.writer
    assert loops.running == []
    # The order writer took no confirm after the shutdown path stopped it.
    with pytest.raises(ConnectionError):
        await writer.write(OrderRequest("h1", 1, "b", 1, 100, 1, "pay"))
