"""Shutdown steps are bounded: one stuck or failing step never keeps the next from running."""

from __future__ import annotations

import asyncio

import pytest

from live import services


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
