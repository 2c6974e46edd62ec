"""Helpers of the tests that take parts of the topology down (a Redis Cluster primary, a live
node behind HAProxy): a cluster of the test's own, viewers that reconnect and resume the way
docs/protocol.md tells clients to, a host that pins steadily, and a sale's HTTP calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from gateway_testkit import Room, Viewer, ws_url

from gateway.auth import mint
from live.embedded_cluster import LocalCluster
from rooms.actors import Role

RECONNECT_S = 0.1  # a follower's pause between two connection attempts


@contextlib.asynccontextmanager
async def own_cluster(directory: Path, node_timeout_ms: int = 1000) -> AsyncIterator[LocalCluster]:
    """3 primaries and 3 replicas of the test's own, with AOF (a killed node loses only what it
    had not replicated), failing over `node_timeout_ms` after a primary stops answering."""
    cluster = LocalCluster(directory, node_timeout_ms=node_timeout_ms)
    try:
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


class Follower:
    """A viewer that reconnects to `base` after every close and resumes with the (epoch, seq) it
    had: `events` is what it applied over all its connections, `closes` each connection's close
    code, `resumed` how many welcomes said it was resumed."""

    def __init__(self, base: str, room: Room, name: str) -> None:
        self.base = base
        self.room = room
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.closes: list[int | None] = []
        self.resumed = 0
        self.epoch = ""
        self.seq = 0
        self.connected = asyncio.Event()
        self.viewer: Viewer | None = None  # the connection now
        self._task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        """The last seq it applied, on this connection or an earlier one."""
        return self.viewer.seq if self.viewer is not None else self.seq

    def start(self, stop: asyncio.Event) -> None:
        self._task = asyncio.create_task(self._run(stop), name=f"follower-{self.name}")

    async def _run(self, stop: asyncio.Event) -> None:
        token = self.room.viewer_token(self.name)
        while not stop.is_set():
            params: dict[str, str | int] = {"token": token}
            if self.epoch:
                params |= {"since": self.seq, "epoch": self.epoch}
            try:
                viewer = await Viewer.open(
                    ws_url(self.base, self.room.id, **params),
                    resume=(self.epoch, self.seq) if self.epoch else None,
                )
            except (OSError, TimeoutError, AssertionError, Exception):
                await asyncio.sleep(RECONNECT_S)  # the node or the proxy is not there yet
                continue
            if viewer.welcome is not None and viewer.welcome.get("resumed"):
                self.resumed += 1
            self.viewer = viewer
            self.connected.set()
            closed = asyncio.create_task(viewer.wait_closed(within=3600))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not closed.done():
                await viewer.close()
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await closed
            self.connected.clear()
            self.events += viewer.applied
            self.epoch, self.seq = viewer.epoch, viewer.seq
            self.viewer = None
            if not stop.is_set():
                self.closes.append(viewer.close_code)

    async def wait_stopped(self) -> None:
        if self._task is not None:
            await asyncio.wait_for(self._task, 15)

    def pins(self) -> list[int]:
        """The seqs of the pins it applied, in the order it applied them."""
        return [e["seq"] for e in self.events if e["type"] == "pinned"]


async def pin_steadily(
    base: str, room: Room, stop: asyncio.Event, every_s: float = 0.1
) -> list[int]:
    """Pin (alternating products) until `stop`; returns the seqs of the pins the server
    acknowledged. A pin that fails (its node died, Redis fails over) is not retried."""
    acknowledged: list[int] = []
    n = 0
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while not stop.is_set():
            n += 1
            with contextlib.suppress(httpx.HTTPError):
                response = await client.post(
                    f"/api/rooms/{room.id}/pin",
                    json={"product_id": room.products[n % len(room.products)]},
                    headers=room.headers(),
                )
                if response.status_code == 200:
                    acknowledged.append(response.json()["seq"])
            await asyncio.sleep(every_s)
    return acknowledged


async def until(condition: Any, within_s: float, what: str) -> None:
    """Wait (polling) until `condition()` holds; fail naming `what` after `within_s`."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.05)


# -- a sale over HTTP --------------------------------------------------------------------------


def buyer_headers(room: Room, buyer: str) -> dict[str, str]:
    token = mint(room.settings.jwt_secret, sub=buyer, role=Role.VIEWER, room=room.id)
    return {"authorization": f"Bearer {token}"}


async def create_sale(client: httpx.AsyncClient, room: Room, stock: int) -> int:
    response = await client.post(
        f"/api/rooms/{room.id}/sales",
        json={
            "product_id": room.products[0],
            "stock": stock,
            "price_cents": 500,
            "limit_per_buyer": 1,
            "hold_seconds": 60,
        },
        headers=room.headers(),
    )
    assert response.status_code == 201, response.text
    sale_id: int = response.json()["id"]
    return sale_id


async def start_sale(client: httpx.AsyncClient, room: Room, sale_id: int) -> None:
    response = await client.post(f"/api/sales/{sale_id}/start", headers=room.headers())
    assert response.status_code == 200 and response.json()["state"] == "open", response.text
