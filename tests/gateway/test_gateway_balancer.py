"""Three `live serve` nodes behind a real HAProxy (deploy/haproxy.cfg), viewers and the host
going through it: one node SIGKILLed and another drained (SIGTERM) mid-stream. Every viewer is
back on a node that still runs, resumed, with every acknowledged pin in order; the drained
node's viewers were closed with 1012 ("reconnect elsewhere") after the proxy had taken it out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from pathlib import Path

import pytest
from cluster_kit import Follower, pin_steadily, until
from gateway_testkit import make_room
from live_env import live_serve

from gateway.protocol import CloseCode
from live.embedded import free_port
from live.haproxy import HAProxy, binary
from live.settings import Settings

VIEWERS = 9
DRAIN_S = 1.5  # above the proxy's time to take a node out (2 checks 500 ms apart)


async def test_a_node_killed_and_one_drained_behind_haproxy(
    settings: Settings, tmp_path: Path, on_cluster: bool
) -> None:
    if on_cluster:
        pytest.skip("serves nodes of its own: run once, in the plain session")
    binary()  # fails with what to install when HAProxy is missing
    settings = dataclasses.replace(settings, drain_s=DRAIN_S)
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(live_serve(settings)) for _ in range(3)]
        ports = [int(url.rsplit(":", 1)[1]) for url, _ in nodes]
        proxy = HAProxy(tmp_path / "haproxy", free_port(), ports, free_port())
        await asyncio.to_thread(proxy.start)
        stack.callback(proxy.stop)

        room = await make_room(proxy.url, settings, room="balanced")
        stop, pinning = asyncio.Event(), asyncio.Event()
        followers = [Follower(proxy.url, room, f"viewer-{i}") for i in range(VIEWERS)]
        for follower in followers:
            follower.start(stop)
        await until(lambda: all(f.connected.is_set() for f in followers), 30, "viewers in")
        pins = asyncio.create_task(pin_steadily(proxy.url, room, pinning))
        await until(lambda: all(f.last_seq > 3 for f in followers), 20, "pins before")

        (_, killed), (_, drained), _ = nodes
        killed.kill()  # SIGKILL: its viewers' connections drop, nothing is said
        await until(lambda: sum(len(f.closes) for f in followers) >= 1, 20, "a viewer dropped")
        await until(lambda: all(f.connected.is_set() for f in followers), 30, "back after kill")
        drained.send_signal(signal.SIGTERM)
        await asyncio.wait_for(drained.wait(), DRAIN_S + 30)
        await until(lambda: all(f.connected.is_set() for f in followers), 30, "back after drain")
        await asyncio.sleep(1)  # pins on the last node
        pinning.set()
        acknowledged = await pins
        await until(lambda: all(f.last_seq >= max(acknowledged) for f in followers), 10, "last pin")
        stop.set()
        await asyncio.gather(*(f.wait_stopped() for f in followers))

    closes = [code for f in followers for code in f.closes]
    assert CloseCode.SERVICE_RESTART in closes, closes  # the drained node's viewers
    assert len(closes) >= VIEWERS * 2 // 3 - 1, closes  # leastconn spread them over 3 nodes
    assert sum(f.resumed for f in followers) == len(closes), "a reconnect was not resumed"
    assert len(acknowledged) > 10
    for follower in followers:
        received = follower.pins()
        assert received == sorted(set(received)), f"{follower.name}: out of order"
        missing = set(acknowledged) - set(received)
        assert not missing, f"{follower.name} missed pins {sorted(missing)}"
