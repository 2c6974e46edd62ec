"""No token in any log: `live serve` with its access log on, real requests carrying tokens in the
query string and the Authorization header, and what the process wrote."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import httpx
from gateway_testkit import REPO, live_env
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import mint
from gateway.logs import REDACTED, RedactSecrets, redact
from live.embedded import free_port
from live.settings import Settings
from rooms.actors import Role


async def _serve_logged(
    settings: Settings, log_path: Path, port: int
) -> asyncio.subprocess.Process:
    env = live_env(settings)
    env["LIVE_LOG_LEVEL"] = "info"
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "live.cli",
            "serve",
            "--port",
            str(port),
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + 60
        while True:
            assert process.returncode is None, "live serve exited"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "live serve never became ready"
            await asyncio.sleep(0.1)


async def test_served_requests_log_no_token(settings: Settings, tmp_path: Path) -> None:
    token = mint(settings.jwt_secret, sub="ann", role=Role.HOST, room="show", ttl_s=600)
    port = free_port()
    log_path = tmp_path / "serve.log"
    process = await _serve_logged(settings, log_path, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            made = await client.put(
                f"/api/rooms/show?access_token={token}",
                json={"title": "t"},
                headers={"authorization": f"Bearer {token}"},
            )
            assert made.status_code == 200, made.text
            await client.get(f"/api/rooms/show?token={token}&since=1")
            await client.get("/api/rooms/show", headers={"authorization": f"Bearer {token}"})
        url = f"ws://127.0.0.1:{port}/ws/rooms/show?since=3&token={token}"
        async with connect(url, open_timeout=10) as ws:
            await ws.send('{"type": "ping", "ref": "p"}')
            await asyncio.wait_for(ws.recv(), 10)
        async with connect(f"ws://127.0.0.1:{port}/ws/rooms/nowhere?token={token}") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                pass
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    written = log_path.read_text()
    assert token not in written
    assert token.split(".")[2] not in written  # not even the signature
    assert f'"GET /api/rooms/show?token={REDACTED}&since=1 HTTP/1.1" 200' in written, written
    assert f"/api/rooms/show?access_token={REDACTED}" in written
    assert f'"WebSocket /ws/rooms/show?since=3&token={REDACTED}" [accepted]' in written, written
    assert f"/ws/rooms/nowhere?token={REDACTED}" in written


def test_the_filter_masks_arguments_messages_and_tracebacks() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl"
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        "headers %s, path %s, status %d",
        ([(b"authorization", f"Bearer {token}".encode())], f"/x?token={token}", 200),
        exc_info,
    )
    assert RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert token not in text and "c2lnbmF0dXJl" not in text
    assert f"path /x?token={REDACTED}, status 200" in text
    assert redact(f"Authorization: Bearer {token}") == f"Authorization: {REDACTED}"
