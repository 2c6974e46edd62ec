"""The viewers: load-generator processes, each one asyncio loop of lean raw WebSocket clients that
count every frame and event and, on probe viewers, time every event against its `pt`."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import cast

from .procstats import run_generator, self_cpu_s

WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
# An event's type and `pt`, whether its envelope names its lane and key or leaves them implied.
EVENT_RE = re.compile(
    rb'"type":"(\w+)",(?:"lane":"\w+",)?(?:"key":"[^"]*",)?"data":\{"pt":([0-9.]+)'
)
PT = b'"pt":'
# What made a viewer ready (its `ready` future's result): a snapshot (for a Socket.IO viewer:
# its namespace connect), or a resume.
SNAPSHOT = b'{"type":"snapshot"'
RESUMED = b'{"type":"welcome","resumed":true'


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    kind: str  # "live" or "sio" (both peers speak Socket.IO v5 over Engine.IO v4)
    port: int
    path: str
    count: int
    first: int  # global index of this worker's first viewer
    probe_every: int
    cpus: tuple[int, ...]
    connect_timeout_s: float
    concurrency: int
    nice: int


class Tally:
    """What one worker's viewers received, counted by every viewer, lag sampled by probes."""

    def __init__(self) -> None:
        self.t0 = math.inf
        self.t1 = math.inf
        self.pt0 = math.inf  # window in ms, for publish times
        self.pt1 = math.inf
        self.frames = 0
        self.events = 0
        self.bytes = 0
        self.hist: dict[int, int] = {}  # lag in 0.1 ms buckets -> events (probes only)
        self.lag_max = 0.0
        self.pins = 0  # pins of the window received by probes
        self.ready = 0
        self.probes = 0
        self.lost = 0
        self.closing = False

    def sample(self, data: bytes, start: int, end: int, now_ms: float) -> None:
        hist = self.hist
        for match in EVENT_RE.finditer(data, start, end):
            pt = float(match.group(2))
            if not self.pt0 <= pt < self.pt1:
                continue
            lag = max(0.0, now_ms - pt)
            bucket = int(lag * 10)
            hist[bucket] = hist.get(bucket, 0) + 1
            if lag > self.lag_max:
                self.lag_max = lag
            if match.group(1) == b"pinned":
                self.pins += 1


def _masked_text(payload: bytes) -> bytes:
    """A client text frame (masked with a zero key: the payload stays as it is)."""
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


class Viewer(asyncio.Protocol):
    """A raw WebSocket client: handshake, unmasked server frames, pings; nothing else parsed
    except by probes, so the generator stays cheaper than the servers it measures."""

    def __init__(self, tally: Tally, request: bytes, probe: bool, sio: bool) -> None:
        self.tally = tally
        self.request = request
        self.probe = probe
        self.sio = sio
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.fragments: list[bytes] = []
        self.fast = False  # set once ready, for viewers that are not probes
        self.counts_pt = not sio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before it was ready"))
        elif not self.tally.closing:
            self.tally.lost += 1

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.fast and data[0] == 0x81 and not self.buffer:
            # The common case, inlined: one whole unfragmented text frame, counted only.
            length = data[1]
            start = 2 if length < 126 else 4
            if length == 126:
                length = (data[2] << 8) | data[3]
            if start + length == len(data) and (self.counts_pt or data.startswith(b"42", start)):
                now = time.time()
                tally = self.tally
                if tally.t0 <= now < tally.t1:
                    tally.frames += 1
                    tally.events += data.count(PT, start) if self.counts_pt else 1
                    tally.bytes += length
                return
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        pos = 0
        if not self.upgraded:
            head = data.find(b"\r\n\r\n")
            if head < 0:
                if len(data) > 65536:
                    self._fail("handshake response too long")
                else:
                    self.buffer = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self._fail(data[: data.find(b"\r\n")].decode("latin-1"))
                return
            self.upgraded = True
            pos = head + 4
        n = len(data)
        now = time.time()
        while n - pos >= 2:
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                if n - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            end = start + length
            if end > n:
                break
            self._frame(data[pos], data, start, end, now)
            pos = end
        if pos < n:
            self.buffer = data[pos:]

    def _frame(self, head: int, data: bytes, start: int, end: int, now: float) -> None:
        opcode = head & 0x0F
        if opcode in (1, 2, 0):
            if not head & 0x80 or self.fragments:  # fragmented: rare, kept simple
                self.fragments.append(data[start:end])
                if not head & 0x80:
                    return
                data = b"".join(self.fragments)
                self.fragments = []
                start, end = 0, len(data)
            if self.sio:
                self._sio_message(data, start, end, now)
            else:
                self._live_message(data, start, end, now)
        elif opcode == 9 and self.transport is not None:  # ping: pong with its payload
            payload = data[start:end]
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
        elif opcode == 8:
            self._fail("closed by the server")

    def _count(self, data: bytes, start: int, end: int, now: float, events: int) -> None:
        tally = self.tally
        if tally.t0 <= now < tally.t1:
            tally.frames += 1
            tally.events += events
            tally.bytes += end - start
        if self.probe:
            tally.sample(data, start, end, now * 1000)

    def _live_message(self, data: bytes, start: int, end: int, now: float) -> None:
        if self.ready.done():
            self._count(data, start, end, now, data.count(PT, start, end))
        elif data.startswith(b'{"type":"snapshot"', start):
            self.ready.set_result(SNAPSHOT)
        elif data.startswith(RESUMED, start):
            self.ready.set_result(RESUMED)

    def _sio_message(self, data: bytes, start: int, end: int, now: float) -> None:
        kind = data[start : start + 2]
        if kind == b"42":
            self._count(data, start, end, now, 1)
        elif kind == b"2" and end - start == 1 and self.transport is not None:
            self.transport.write(_masked_text(b"3"))  # Engine.IO ping -> pong
        elif data[start : start + 1] == b"0" and self.transport is not None:
            self.transport.write(_masked_text(b"40"))  # open -> connect to namespace "/"
        elif kind == b"40":
            if not self.ready.done():
                self.ready.set_result(SNAPSHOT)
        elif kind in (b"41", b"44"):
            self._fail(data[start:end].decode("utf-8", "replace"))


def upgrade_request(port: int, path: str) -> bytes:
    """A viewer's WebSocket handshake request for `path`."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def viewer_worker(pipe: Pipe, spec: WorkerSpec) -> None:
    """A load-generator process: connect, report, count, report, close."""
    run_generator(spec.cpus, spec.nice, _viewers(pipe, spec))


async def _viewers(pipe: Pipe, spec: WorkerSpec) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    request = upgrade_request(spec.port, spec.path)
    viewers: list[Viewer] = []
    gate = asyncio.Semaphore(spec.concurrency)
    began = time.monotonic()
    deadline = began + spec.connect_timeout_s
    errors: dict[str, int] = {}

    async def open_one(index: int) -> None:
        probe = (spec.first + index) % spec.probe_every == 0
        async with gate:
            if time.monotonic() >= deadline:
                errors["connect timeout"] = errors.get("connect timeout", 0) + 1
                return
            viewer = Viewer(tally, request, probe, spec.kind == "sio")
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await loop.create_connection(lambda: viewer, "127.0.0.1", spec.port)
                    await viewer.ready
            except (OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                errors[reason[:80]] = errors.get(reason[:80], 0) + 1
                if viewer.transport is not None:
                    viewer.transport.abort()
                return
            viewers.append(viewer)
            viewer.fast = not probe
            tally.ready += 1
            tally.probes += probe

    await asyncio.gather(*(open_one(i) for i in range(spec.count)))
    pipe.send(("ready", tally.ready, time.monotonic() - began, errors))
    command = await asyncio.to_thread(pipe.recv)
    if command[0] == "measure":
        _, t0, t1, t_end = command
        tally.pt0, tally.pt1 = t0 * 1000, t1 * 1000
        await asyncio.sleep(max(0.0, t0 - time.time()))
        tally.t0, tally.t1 = t0, t1
        cpu0 = self_cpu_s()
        await asyncio.sleep(max(0.0, t1 - time.time()))
        cpu1 = self_cpu_s()
        await asyncio.sleep(max(0.0, t_end - time.time()))
        pipe.send(
            (
                "stats",
                {
                    "frames": tally.frames,
                    "events": tally.events,
                    "bytes": tally.bytes,
                    "hist": tally.hist,
                    "lag_max": tally.lag_max,
                    "pins": tally.pins,
                    "probes": tally.probes,
                    "lost": tally.lost,
                    "cpu_s": cpu1 - cpu0,
                },
            )
        )
        await asyncio.to_thread(pipe.recv)  # "close"
    tally.closing = True
    for viewer in viewers:
        if viewer.transport is not None:
            viewer.transport.abort()  # RST: no TIME_WAIT pile-up between runs
    await asyncio.sleep(0.2)
