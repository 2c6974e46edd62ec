"""Helpers of the gateway tests: the real app under uvicorn in the test's loop (with access to its
gateway), a second `live serve` process, rooms made over HTTP, and a WebSocket viewer that
applies the protocol's client rules and checks what it receives."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import httpx
from live_env import REPO as REPO  # re-exported: tests import them from here
from live_env import live_env as live_env
from serve_kit import serve_app
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import mint
from gateway.envelope import expand
from gateway.server import Gateway
from live.app import services, websocket_options
from live.embedded import free_port
from live.services import Services
from live.settings import Settings
from rooms.actors import Role

FRAME_TIMEOUT_S = 10.0


@dataclass
class Served:
    url: str
    app: Starlette
    settings: Settings

    @property
    def gateway(self) -> Gateway:
        return services(self.app).gateway

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


@asynccontextmanager
async def serve(settings: Settings, **config: Any) -> AsyncIterator[Served]:
    """The real app under uvicorn in this loop (conftest's serve_app); `config` overrides
    fields of its GatewayConfig before the services go to work."""

    def tune(services: Services) -> None:
        services.gateway.config = replace(services.gateway.config, **config)

    options = websocket_options(settings)  # looked up here: a test may replace it
    async with serve_app(settings, tune if config else None, options) as served:
        yield Served(served.url, served.app, settings)


@asynccontextmanager
async def serving_process(settings: Settings) -> AsyncIterator[str]:
    """`live serve` as its own process on the test's Redis and PostgreSQL; yields its URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "live.cli",
        "serve",
        "--port",
        str(port),
        env=live_env(settings),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                if process.returncode is not None:
                    err = await process.stderr.read() if process.stderr else b""
                    raise AssertionError(f"live serve exited: {err.decode()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "live serve never became ready"
                await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


# -- rooms over HTTP ------------------------------------------------------------------------


@dataclass
class Room:
    id: str
    url: str
    settings: Settings
    host_token: str
    products: list[int] = field(default_factory=list)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.host_token}"}

    def viewer_token(self, sub: str, room: str | None = None) -> str:
        return mint(self.settings.jwt_secret, sub=sub, role=Role.VIEWER, room=room or self.id)

    async def pin(self, product: int | None = None, base: str | None = None) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base or self.url, timeout=10) as client:
            response = await client.post(
                f"/api/rooms/{self.id}/pin",
                json={"product_id": product or self.products[0]},
                headers=self.headers(),
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def make_room(
    url: str, settings: Settings, room: str = "show", products: int = 2, **room_settings: Any
) -> Room:
    host = mint(settings.jwt_secret, sub="host-1", role=Role.HOST, room=room)
    made = Room(room, url, settings, host)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.put(
            f"/api/rooms/{room}",
            json={"title": "A show", "settings": room_settings},
            headers=made.headers(),
        )
        assert response.status_code == 200, response.text
        for n in range(products):
            response = await client.post(
                f"/api/rooms/{room}/products",
                json={"sku": f"sku-{n}", "title": f"Product {n}", "price_cents": 1000 + n},
                headers=made.headers(),
            )
            assert response.status_code == 201, response.text
            made.products.append(response.json()["id"])
    return made


# -- a viewer ----------------------------------------------------------------------------------

_parsed: dict[str, dict[str, Any]] = {}


def parse_frame(text: str) -> dict[str, Any]:
    """Frames are shared by every viewer of a room: parse each distinct one once. The events of
    an `events` frame are expanded to their full envelope (gateway/envelope.py)."""
    frame = _parsed.get(text)
    if frame is None:
        if len(_parsed) > 20_000:
            _parsed.clear()
        frame = json.loads(text)
        if frame.get("type") == "events":
            frame["events"] = expand(frame)
        _parsed[text] = frame
    return frame


@dataclass(frozen=True)
class _Summary:
    first: int
    last: int
    epoch: str
    ordered: bool  # seqs strictly increasing and one epoch
    lossy: int
    critical: list[tuple[int, int]]  # (seq, ts)


def _summary(frame: dict[str, Any]) -> _Summary:
    """What every viewer checks in an events frame, computed once per distinct frame."""
    summary: _Summary | None = frame.get("_summary")
    if summary is None:
        events = frame["events"]
        seqs = [e["seq"] for e in events]
        summary = _Summary(
            first=seqs[0],
            last=seqs[-1],
            epoch=events[0]["epoch"],
            ordered=all(a < b for a, b in itertools.pairwise(seqs))
            and all(e["epoch"] == events[0]["epoch"] for e in events),
            lossy=sum(1 for e in events if e["lane"] == "lossy"),
            critical=[(e["seq"], e["ts"]) for e in events if e["lane"] == "critical"],
        )
        frame["_summary"] = summary
    return summary


def ws_url(base: str, room: str, **params: str | int) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{base.replace('http://', 'ws://', 1)}/ws/rooms/{room}{query}"


class Viewer:
    """A WebSocket viewer that follows the client rules of docs/protocol.md: it applies events
    with a seq above the last applied one (others are counted as `stale`), resets on snapshots,
    and remembers (epoch, last seq) for resume. It also checks every events frame: seqs
    strictly increasing (`disorder` counts violations) and at most `lossy_cap` lossy events."""

    def __init__(self, ws: ClientConnection, lossy_cap: int | None = None) -> None:
        self.ws = ws
        self.lossy_cap = lossy_cap
        self.epoch = ""
        self.seq = 0
        self.welcome: dict[str, Any] | None = None
        self.snapshots = 0
        self.snapshot_seq = 0
        self.frames = 0
        self.applied: list[dict[str, Any]] = []
        self.arrivals: dict[int, float] = {}  # seq of a critical event -> time.time() received
        self.lags_ms: list[float] = []  # critical events: receive time - event ts
        self.stale = 0
        self.disorder = 0
        self.over_cap = 0
        self.skipped = 0
        self.lossy = 0  # lossy events received (applied or not)
        self.others: list[dict[str, Any]] = []  # replies and errors
        self.close_code: int | None = None
        self._last_in_frames = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self.keep_events = True
        self.unrecorded = frozenset({"viewers"})  # applied, not kept: presence counts come any time

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        lossy_cap: int | None = None,
        wait_welcome: bool = True,
        reading: bool = True,
        resume: tuple[str, int] | None = None,
        **kwargs: Any,
    ) -> Viewer:
        """`resume` is the (epoch, last applied seq) the viewer had, when `url` resumes."""
        ws = await connect(url, open_timeout=30, max_size=2**24, **kwargs)
        viewer = cls(ws, lossy_cap)
        if resume is not None:
            viewer.epoch, viewer.seq = resume
            viewer._last_in_frames = viewer.seq
        if reading:
            viewer.start()
            if wait_welcome:
                await viewer.wait_for(lambda: viewer.welcome is not None)
        return viewer

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    def pause(self) -> None:
        """Stop reading (after the message being read): the socket's buffers fill up."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def resume_params(self) -> dict[str, str | int]:
        return {"since": self.seq, "epoch": self.epoch}

    async def _read(self) -> None:
        try:
            while True:
                await self._reading.wait()
                message = await self.ws.recv()
                assert isinstance(message, str)
                self.handle(parse_frame(message))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._changed.set()

    def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        self.frames += 1
        if kind == "welcome":
            # Resumed: the replay (since+1 .. welcome.seq) follows. Not resumed: a snapshot.
            self.welcome = frame
        elif kind == "snapshot":
            self.snapshots += 1
            snapshot = frame["snapshot"]
            self.epoch, self.seq = snapshot["epoch"], snapshot["seq"]
            self.snapshot_seq = self._last_in_frames = snapshot["seq"]
        elif kind == "events":
            self._events(frame)
        else:
            self.others.append(frame)

    def _events(self, frame: dict[str, Any]) -> None:
        events = frame["events"]
        self.skipped += frame["skipped"]
        if not events:
            return
        summary = _summary(frame)
        if (
            not self.keep_events
            and summary.ordered
            and summary.epoch == self.epoch
            and summary.first > max(self.seq, self._last_in_frames)
        ):
            # The common case, checked once per distinct frame: in order, all new.
            now = time.time()
            self._last_in_frames = self.seq = summary.last
            self.lossy += summary.lossy
            if self.lossy_cap is not None and summary.lossy > self.lossy_cap:
                self.over_cap += 1
            for seq, ts in summary.critical:
                self.arrivals[seq] = now
                self.lags_ms.append(now * 1000 - ts)
            return
        lossy = 0
        now = time.time()
        for event in events:
            seq = event["seq"]
            if seq <= self._last_in_frames:
                self.disorder += 1
            self._last_in_frames = seq
            if event["lane"] == "lossy":
                lossy += 1
            if event["epoch"] != self.epoch:
                # The server sends a snapshot before events of another epoch; only a log that
                # did not exist yet at the snapshot (epoch "") starts without one.
                if self.epoch:
                    self.disorder += 1
                self.epoch, self.seq = event["epoch"], 0
            if seq <= self.seq:
                self.stale += 1
                continue
            self.seq = seq
            if self.keep_events and event["type"] not in self.unrecorded:
                self.applied.append(event)
            if event["lane"] == "critical":
                self.arrivals[seq] = now
                self.lags_ms.append(now * 1000 - event["ts"])
        self.lossy += lossy
        if self.lossy_cap is not None and lossy > self.lossy_cap:
            self.over_cap += 1

    async def wait_for(
        self, condition: Callable[[], bool], within: float = FRAME_TIMEOUT_S
    ) -> None:
        async with asyncio.timeout(within):
            while not condition():
                if self._task is not None and self._task.done() and not condition():
                    raise AssertionError(f"connection closed ({self.close_code}) while waiting")
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self, within: float = FRAME_TIMEOUT_S) -> int | None:
        async with asyncio.timeout(within):
            if self._task is not None:
                await self._task
            else:
                await self.ws.wait_closed()
                self.close_code = self.ws.close_code
        return self.close_code

    async def reply(self, ref: str, within: float = FRAME_TIMEOUT_S) -> dict[str, Any]:
        """The reply or error frame answering the message with this ref."""

        def answered() -> bool:
            return any(f.get("ref") == ref for f in self.others)

        await self.wait_for(answered, within)
        return next(f for f in self.others if f.get("ref") == ref)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    def critical(self) -> list[dict[str, Any]]:
        return [e for e in self.applied if e["lane"] == "critical"]

    def applied_types(self) -> list[str]:
        return [e["type"] for e in self.applied]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def eventually(
    condition: Callable[[], bool], within: float = FRAME_TIMEOUT_S, every: float = 0.02
) -> None:
    """Poll `condition` until it holds, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within}s: {condition}"
        await asyncio.sleep(every)


def small_receive_buffer_socket(port: int, size: int = 4096) -> socket.socket:
    """A connected loopback socket with a small receive buffer, so a viewer that stops reading
    fills the server's buffers quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def open_viewers(url: str, count: int, parallel: int = 100, **kwargs: Any) -> list[Viewer]:
    gate = asyncio.Semaphore(parallel)

    async def one() -> Viewer:
        async with gate:
            return await Viewer.open(url, **kwargs)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(viewers: list[Viewer]) -> None:
    await asyncio.gather(*(v.close() for v in viewers))
