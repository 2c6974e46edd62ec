"""One room, N viewers: what the gateway delivers, how late, at what CPU and memory, beside
python-socketio (AsyncRedisManager) and Node's socket.io (@socket.io/redis-adapter) serving the
same room workload in the same run.

    .venv/bin/python bench/fanout.py [--viewers 1000,5000,10000] [--duration 10]
                                     [--only live|node|socketio] [--rate 200] [--tick-ms MS]
                                     [--nice -10]   # as root, when other work shares the machine

Each run starts one server process (pinned to CPU 0 unless --no-pin), connects N viewers from
--workers load-generator processes (pinned to the other CPUs; each one asyncio loop with a lean
raw WebSocket client), publishes the room workload for a warm-up and then --duration seconds and
reads what every viewer received:
- live: `python -m live.cli serve` (one worker) on the machine's Redis and PostgreSQL, under a
  unique LIVE_REDIS_PREFIX and LIVE_DATABASE_SCHEMA (both removed afterwards); events go in with
  RoomLog.publish (the Lua XADD + PUBLISH that the HTTP API uses too); one frame per tick.
- socketio: bench/peers/socketio_server.py (AsyncServer + AsyncRedisManager under uvicorn); each
  event is published on the manager's channel as a write-only AsyncRedisManager does.
- node: bench/peers/node_server.js (socket.io + @socket.io/redis-adapter); each event is
  published on the adapter's room channel as @socket.io/redis-emitter does.
Both peers emit each event to the room as one message, which is how those frameworks are used;
they are installed from the registries into --peers-dir (default ~/.cache/live-bench), never into
the repository.

The workload (--rate events/s): a pin every --pin-every seconds (critical), a stock change every
fifth event (state), comments for the rest (lossy). Every event carries `pt`, its publish time in
ms; a viewer's lag is its receive time minus `pt` (one machine, one clock), sampled on about
--probes viewers spread over the room (every event they receive), while every viewer counts its
frames and events. Server CPU and memory come from /proc; memory per connection is
(RSS at the end of the window - RSS before the first viewer) / N.

A run passes when every viewer connected and stayed, every probe got every pin of the window,
and p99 < 250 ms. For each server the counts run in ascending order; above a peer's failed count
the rest are skipped (--no-skip runs them; live runs every count), and up to --search extra runs
look for the largest passing count below the first failure. Every loop is bounded in time and
count, and the whole bench stops starting runs after --budget seconds (the default run takes
about 4.5 minutes). The generator costs about as much CPU per frame as the server does: a row
flagged "generator saturated" measured the generator's core, not the server; the "other" column
is CPU taken by work this bench did not start (on a shared machine, --nice -10 keeps it off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis

from rooms.auth import Role, mint
from rooms.events import lane_of
from rooms.log import RoomLog

ROOT = Path(__file__).resolve().parents[1]
PEER_SOURCES = ROOT / "bench" / "peers"
KINDS = ("live", "node", "socketio")
LABELS = {"live": "live", "node": "node socket.io", "socketio": "python-socketio"}
P99_GOAL_MS = 250.0
GOAL_RATIO = {"node": 5.0, "socketio": 20.0}
SECRET = "fanout-bench-secret-0123456789abcdef0123456789"
PY_PEER_REQUIREMENTS = ("python-socketio>=5.11,<6", "uvicorn[standard]>=0.30", "redis>=5")
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
WARM_UP_S = 2.0
DRAIN_S = 3.0
MIN_VIEWERS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
COMMENTS = (
    "is this available in medium?",
    "love the colour, just ordered one!!",
    "how long does shipping take to Lisbon",
    "can you show the back of the jacket please",
    "price drop when? asking for a friend",
    "that fabric looks so soft",
)
EVENT_RE = re.compile(rb'"type":"(\w+)","lane":"\w+","data":\{"pt":([0-9.]+)')
PT = b'"pt":'


# -- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    rate: float
    pin_every_s: float

    @property
    def pin_period(self) -> int:
        return max(1, round(self.rate * self.pin_every_s))

    def kind(self, i: int) -> str:
        if i % self.pin_period == 0:
            return "pinned"
        return "stock" if i % 5 == 1 else "comment"

    def data(self, kind: str, i: int, pt: float) -> dict[str, Any]:
        if kind == "pinned":
            product = 1 + (i // self.pin_period) % 12
            return {"pt": pt, "product_id": product, "title": f"Product {product}", "price": 1999}
        if kind == "stock":
            return {"pt": pt, "sale_id": 1, "remaining": max(0, 1_000_000 - i)}
        user = i % 997
        return {"pt": pt, "user": f"u{user}", "name": f"viewer {user}", "text": COMMENTS[i % 6]}


Publish = Callable[[str, int, dict[str, Any]], Awaitable[None]]


def msgpack(value: object) -> bytes:
    """The MessagePack subset the socket.io Redis adapter's messages need (notepack.io reads it)."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(value: object, out: bytearray) -> None:
    if value is None:
        out.append(0xC0)
    elif isinstance(value, bool):
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, int):
        if 0 <= value < 128:
            out.append(value)
        elif 0 <= value < 2**32:
            out += b"\xce" + struct.pack(">I", value)
        elif value >= 0:
            out += b"\xcf" + struct.pack(">Q", value)
        else:
            out += b"\xd3" + struct.pack(">q", value)
    elif isinstance(value, float):
        out += b"\xcb" + struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode()
        n = len(raw)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 256:
            out += bytes((0xD9, n))
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += raw
    elif isinstance(value, list | tuple):
        out += (
            bytes((0x90 | len(value),))
            if len(value) < 16
            else b"\xdd" + struct.pack(">I", len(value))
        )
        for item in value:
            _pack(item, out)
    elif isinstance(value, dict):
        out += (
            bytes((0x80 | len(value),))
            if len(value) < 16
            else b"\xdf" + struct.pack(">I", len(value))
        )
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise TypeError(f"cannot pack {type(value).__name__}")


def envelope(kind: str, i: int, data: dict[str, Any]) -> dict[str, Any]:
    """A peer's event: the same fields as a live room event, emitted as one message."""
    pt = float(data["pt"])
    return {"seq": i + 1, "ts": int(pt), "type": kind, "lane": lane_of(kind).value, "data": data}


@dataclass
class Published:
    sent: int = 0
    in_window: int = 0
    pins_in_window: int = 0
    window_s: float = 0.0
    slowest_ms: float = 0.0


async def publish_loop(
    publish: Publish, workload: Workload, start: float, t0: float, t1: float
) -> Published:
    """Publish event i at start + i/rate until t1 (bounded by the count that fits)."""
    done = Published(window_s=t1 - t0)
    limit = math.ceil((t1 - start) * workload.rate) + 1
    for i in range(limit):
        at = start + i / workload.rate
        if at >= t1:
            break
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = workload.kind(i)
        now = time.time()
        began = time.perf_counter()
        await publish(kind, i, workload.data(kind, i, round(now * 1000, 3)))
        done.slowest_ms = max(done.slowest_ms, (time.perf_counter() - began) * 1000)
        done.sent += 1
        if t0 <= now < t1:
            done.in_window += 1
            done.pins_in_window += kind == "pinned"
    return done


# -- the viewers (load-generator processes) --------------------------------------------------


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
            self.ready.set_result(None)

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
                self.ready.set_result(None)
        elif kind in (b"41", b"44"):
            self._fail(data[start:end].decode("utf-8", "replace"))


def viewer_worker(pipe: Pipe, spec: WorkerSpec) -> None:
    """A load-generator process: connect, report, count, report, close."""
    if spec.cpus:
        os.sched_setaffinity(0, spec.cpus)
    if spec.nice:
        with contextlib.suppress(OSError):
            os.setsid()
        _prioritize(spec.nice)
    _raise_fd_limit()
    try:
        import uvloop

        uvloop.run(_viewers(pipe, spec))
    except ImportError:
        asyncio.run(_viewers(pipe, spec))


async def _viewers(pipe: Pipe, spec: WorkerSpec) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    request = (
        f"GET {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
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
        cpu0 = _self_cpu_s()
        await asyncio.sleep(max(0.0, t1 - time.time()))
        cpu1 = _self_cpu_s()
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


def _prioritize(nice: int) -> None:
    """Raise the CPU priority of this process, the leader of a session of its own (negative
    values need root). Linux's autogroup shares the CPU between sessions before it looks at a
    process's nice, so the session's nice is set too."""
    if not nice:
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(nice))
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- /proc ----------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_cpu_s() -> tuple[float, float]:
    """(busy, of which interrupts) CPU seconds of the whole machine since boot; loopback TCP is
    mostly processed in softirq time, which no process is charged with."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK, (values[5] + values[6]) / CLK_TCK


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    room: str
    path: str  # what a viewer's GET asks for
    publish: Publish
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(
    cmd: list[str], env: dict[str, str], log_path: Path, args: argparse.Namespace, cwd: Path
) -> subprocess.Popen[bytes]:
    out = log_path.open("wb")
    cpus, nice = args.server_cpus, args.nice

    def pin() -> None:  # in the child, after setsid
        if cpus:
            os.sched_setaffinity(0, cpus)
        _prioritize(nice)

    try:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,
            start_new_session=True,
        )
    finally:
        out.close()


async def _wait_ready(
    proc: subprocess.Popen[bytes], url: str, timeout_s: float, any_status: bool = False
) -> None:
    """Until `url` answers 200 (or anything HTTP with `any_status`), or the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} while starting")
        try:
            status = await asyncio.to_thread(_http_status, url)
            if status == 200 or any_status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s")


def _http_status(url: str, method: str = "GET", body: bytes | None = None, token: str = "") -> int:
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def stop_server(server: Server) -> None:
    proc = server.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
    for step in reversed(server.cleanup):
        try:
            await step()
        except Exception as exc:
            print(f"  cleanup failed: {exc}", file=sys.stderr)


async def start_live(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> Server:
    tag = uuid.uuid4().hex[:10]
    prefix, schema, room = f"bench-{tag}:", f"bench_{tag}", f"fanout-{tag}"
    port = free_port()
    env = {
        **os.environ,
        "LIVE_REDIS_URL": args.redis_url,
        "LIVE_DATABASE_URL": args.database_url,
        "LIVE_REDIS_PREFIX": prefix,
        "LIVE_DATABASE_SCHEMA": schema,
        "LIVE_JWT_SECRET": SECRET,
        "LIVE_DATA_DIR": str(logs / f"data-{tag}"),
        "LIVE_LOG_LEVEL": "warning",
    }
    if args.tick_ms:
        env["LIVE_TICK_MS"] = str(args.tick_ms)
    cmd = [sys.executable, "-m", args.live_module, "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    log_path = logs / f"live-{tag}.log"
    proc = _spawn(cmd, env, log_path, args, ROOT)
    room_log = RoomLog(redis, prefix)

    async def publish(kind: str, i: int, data: dict[str, Any]) -> None:
        await room_log.publish(room, kind, data)

    server = Server("live", port, proc, log_path, room, f"/ws/rooms/{room}", publish)
    server.cleanup.append(lambda: _drop_schema(args.database_url, schema))
    server.cleanup.append(lambda: _delete_keys(redis, prefix))
    await _wait_ready(proc, f"http://127.0.0.1:{port}/readyz", 60)
    token = mint(SECRET, sub="bench-host", role=Role.HOST, room=room, ttl_s=3600)
    body = json.dumps({"title": "fanout bench"}).encode()
    url = f"http://127.0.0.1:{port}/api/rooms/{room}"
    status = await asyncio.to_thread(_http_status, url, "PUT", body, token)
    if status not in (200, 201):
        raise RuntimeError(f"PUT /api/rooms/{room} answered {status}")
    return server


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _delete_keys(redis: aioredis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


async def start_socketio(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> Server:
    tag = uuid.uuid4().hex[:10]
    channel, room, port = f"bench-sio-{tag}", f"fanout-{tag}", free_port()
    python = peer_python(args.peers_dir)
    script = str(PEER_SOURCES / "socketio_server.py")
    log_path = logs / f"socketio-{tag}.log"
    cmd = [str(python), script, str(port), args.redis_url, channel]
    proc = _spawn(cmd, dict(os.environ), log_path, args, PEER_SOURCES)
    host_id = f"bench-{tag}"

    async def publish(kind: str, i: int, data: dict[str, Any]) -> None:
        message = {
            "method": "emit",
            "event": kind,
            "data": [envelope(kind, i, data)],
            "binary": False,
            "namespace": "/",
            "room": room,
            "skip_sid": None,
            "callback": None,
            "host_id": host_id,
        }
        await redis.publish(channel, json.dumps(message, separators=(",", ":")))

    path = f"/socket.io/?EIO=4&transport=websocket&room={room}"
    await _wait_ready(proc, f"http://127.0.0.1:{port}/socket.io/", 30, any_status=True)
    return Server("socketio", port, proc, log_path, room, path, publish)


async def start_node(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> Server:
    tag = uuid.uuid4().hex[:10]
    key, room, port = f"bench-io-{tag}", f"fanout-{tag}", free_port()
    script = str(args.peers_dir / "node" / "node_server.js")
    log_path = logs / f"node-{tag}.log"
    cmd = ["node", script, str(port), args.redis_url, key]
    proc = _spawn(cmd, dict(os.environ), log_path, args, args.peers_dir / "node")
    channel = f"{key}#/#{room}#"
    uid = f"bench-{tag}"

    async def publish(kind: str, i: int, data: dict[str, Any]) -> None:
        packet = {"type": 2, "data": [kind, envelope(kind, i, data)], "nsp": "/"}
        options = {"rooms": [room], "except": [], "flags": {}}
        await redis.publish(channel, msgpack([uid, packet, options]))

    path = f"/socket.io/?EIO=4&transport=websocket&room={room}"
    await _wait_ready(proc, f"http://127.0.0.1:{port}/healthz", 30)
    return Server("node", port, proc, log_path, room, path, publish)


STARTERS = {"live": start_live, "socketio": start_socketio, "node": start_node}


# -- peers' installation (cache directory outside the repository) ----------------------------


def peer_python(peers_dir: Path) -> Path:
    return peers_dir / "python" / "bin" / "python"


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def install_peers(kinds: list[str], peers_dir: Path) -> None:
    """Install what the peers need from the registries, once per change of their sources."""
    if "node" in kinds:
        target = peers_dir / "node"
        target.mkdir(parents=True, exist_ok=True)
        sources = [PEER_SOURCES / "package.json", PEER_SOURCES / "node_server.js"]
        stamp = _digest(*(path.read_bytes() for path in sources))
        for path in sources:
            shutil.copyfile(path, target / path.name)
        if _stamp(target) != stamp or not (target / "node_modules").is_dir():
            print(f"installing socket.io into {target} (npm) ...", flush=True)
            _run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev"], target, 600)
            (target / ".stamp").write_text(stamp)
    if "socketio" in kinds:
        target = peers_dir / "python"
        stamp = _digest(*(r.encode() for r in PY_PEER_REQUIREMENTS))
        if _stamp(target) != stamp or not peer_python(peers_dir).exists():
            print(f"installing python-socketio into {target} (pip) ...", flush=True)
            base = Path(getattr(sys, "_base_executable", sys.executable))
            _run([str(base), "-m", "venv", "--clear", str(target)], peers_dir, 300)
            pip = [str(peer_python(peers_dir)), "-m", "pip", "install", "--quiet"]
            _run([*pip, "--disable-pip-version-check", *PY_PEER_REQUIREMENTS], peers_dir, 600)
            (target / ".stamp").write_text(stamp)


def _stamp(target: Path) -> str:
    try:
        return (target / ".stamp").read_text()
    except OSError:
        return ""


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def peer_versions(kinds: list[str], peers_dir: Path) -> str:
    found: list[str] = []
    if "node" in kinds:
        for name in ("socket.io", "@socket.io/redis-adapter", "redis"):
            meta = peers_dir / "node" / "node_modules" / name / "package.json"
            with contextlib.suppress(OSError, ValueError):
                found.append(f"{name} {json.loads(meta.read_text())['version']}")
        node = subprocess.run(["node", "--version"], capture_output=True, text=True)
        found.append(f"node {node.stdout.strip()}")
    if "socketio" in kinds:
        code = "import importlib.metadata as m; print(m.version('python-socketio'), end=' ')\n"
        code += "print(m.version('uvicorn'))"
        out = subprocess.run(
            [str(peer_python(peers_dir)), "-c", code], capture_output=True, text=True
        )
        with contextlib.suppress(ValueError):
            sio, uvi = out.stdout.split()
            found.append(f"python-socketio {sio} (uvicorn {uvi})")
    return ", ".join(found)


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    viewers: int
    connected: int = 0
    ramp_s: float = 0.0
    ramp_cpu: float = math.nan  # server cores while the viewers connected
    published: Published = field(default_factory=Published)
    window_s: float = 0.0
    frames: int = 0
    events: int = 0
    bytes: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    lag_max: float = math.nan
    pins: int = 0
    probes: int = 0
    lost: int = 0
    server_cpu: float = math.nan  # cores
    gen_cpu: float = math.nan  # cores, the load-generator processes and the publisher
    gen_cores: int = 1
    machine_cpu: float = math.nan  # cores busy on the whole machine
    irq_cpu: float = math.nan  # of which (soft) interrupts: mostly the loopback network
    redis_cpu: float = math.nan
    rss_idle: int = 0
    rss_connected: int = 0
    rss_load: int = 0
    error: str = ""
    skipped: bool = False

    def percentile(self, q: float) -> float:
        total = sum(self.hist.values())
        if not total:
            return math.nan
        rank = q * total
        seen = 0
        for bucket in sorted(self.hist):
            seen += self.hist[bucket]
            if seen >= rank:
                return bucket / 10
        return max(self.hist) / 10

    @property
    def pins_expected(self) -> int:
        return self.published.pins_in_window * self.probes

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and not self.skipped
            and self.connected == self.viewers
            and self.lost == 0
            and self.pins >= self.pins_expected
            and self.percentile(0.99) < P99_GOAL_MS
        )

    @property
    def other_cpu(self) -> float:
        """Cores busy with what this bench did not start (other work on the machine)."""
        redis = 0.0 if math.isnan(self.redis_cpu) else self.redis_cpu
        ours = self.server_cpu + self.gen_cpu + redis + self.irq_cpu
        return max(0.0, self.machine_cpu - ours)

    @property
    def gen_bound(self) -> bool:
        return self.gen_cpu >= 0.9 * self.gen_cores

    def per_s(self, count: int) -> float:
        return count / self.window_s if self.window_s else math.nan

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_load - self.rss_idle) / max(1, self.viewers) / 1024

    def why_not(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return self.error
        reasons = []
        if self.connected < self.viewers:
            reasons.append(f"{self.viewers - self.connected} not connected")
        if self.lost:
            reasons.append(f"{self.lost} dropped")
        if self.pins < self.pins_expected:
            reasons.append(f"pins {self.pins}/{self.pins_expected}")
        if not self.percentile(0.99) < P99_GOAL_MS:
            reasons.append("p99")
        return ", ".join(reasons)


async def run_one(
    args: argparse.Namespace, kind: str, viewers: int, redis: aioredis.Redis, logs: Path
) -> Result:
    result = Result(kind, viewers, gen_cores=len(args.gen_cpus) or os.cpu_count() or 1)
    print(f"- {LABELS[kind]}, {viewers} viewers ...", end="", flush=True)
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Pipe]] = []
    server: Server | None = None
    try:
        server = await STARTERS[kind](args, redis, logs)
        pid = server.proc.pid
        await asyncio.sleep(0.5)
        result.rss_idle = proc_rss(pid)
        probe_every = max(1, math.ceil(viewers / args.probes))
        per_worker = [
            viewers // args.workers + (i < viewers % args.workers) for i in range(args.workers)
        ]
        first = 0
        for index, count in enumerate(per_worker):
            if not count:
                continue
            spec = WorkerSpec(
                index=index,
                kind="live" if kind == "live" else "sio",
                port=server.port,
                path=server.path,
                count=count,
                first=first,
                probe_every=probe_every,
                cpus=args.gen_cpus,
                connect_timeout_s=args.connect_timeout,
                concurrency=args.concurrency,
                nice=args.nice,
            )
            first += count
            mine, theirs = ctx.Pipe()
            child = ctx.Process(target=viewer_worker, args=(theirs, spec), daemon=True)
            child.start()
            theirs.close()
            workers.append((child, mine))
        errors: dict[str, int] = {}
        ramp_began, ramp_cpu0 = time.monotonic(), proc_cpu_s(pid)
        for _, pipe in workers:
            reply = await _recv(pipe, args.connect_timeout + 30)
            result.connected += reply[1]
            result.ramp_s = max(result.ramp_s, reply[2])
            for reason, count in reply[3].items():
                errors[reason] = errors.get(reason, 0) + count
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({server.proc.returncode})")
        result.rss_connected = proc_rss(pid)
        result.ramp_cpu = (proc_cpu_s(pid) - ramp_cpu0) / (time.monotonic() - ramp_began)
        await asyncio.sleep(1.0)
        start = time.time() + 0.3
        t0 = start + WARM_UP_S
        t1 = t0 + args.duration
        t_end = t1 + DRAIN_S
        for _, pipe in workers:
            pipe.send(("measure", t0, t1, t_end))
        workload = Workload(args.rate, args.pin_every)
        publishing = asyncio.create_task(publish_loop(server.publish, workload, start, t0, t1))
        await asyncio.sleep(max(0.0, t0 - time.time()))
        cpu0 = (
            proc_cpu_s(pid),
            _workers_cpu(workers) + _self_cpu_s(),
            machine_cpu_s(),
            await _redis_cpu(redis),
        )
        await asyncio.sleep(max(0.0, t1 - time.time()))
        cpu1 = (
            proc_cpu_s(pid),
            _workers_cpu(workers) + _self_cpu_s(),
            machine_cpu_s(),
            await _redis_cpu(redis),
        )
        result.rss_load = proc_rss(pid)
        result.window_s = t1 - t0
        result.server_cpu = (cpu1[0] - cpu0[0]) / result.window_s
        result.gen_cpu = (cpu1[1] - cpu0[1]) / result.window_s
        result.machine_cpu = (cpu1[2][0] - cpu0[2][0]) / result.window_s
        result.irq_cpu = (cpu1[2][1] - cpu0[2][1]) / result.window_s
        result.redis_cpu = (cpu1[3] - cpu0[3]) / result.window_s
        result.published = await asyncio.wait_for(publishing, DRAIN_S + 30)
        for _, pipe in workers:
            _, stats = await _recv(pipe, DRAIN_S + 60)
            result.frames += stats["frames"]
            result.events += stats["events"]
            result.bytes += stats["bytes"]
            result.pins += stats["pins"]
            result.probes += stats["probes"]
            result.lost += stats["lost"]
            result.lag_max = max(
                stats["lag_max"], 0 if math.isnan(result.lag_max) else result.lag_max
            )
            for bucket, count in stats["hist"].items():
                result.hist[bucket] = result.hist.get(bucket, 0) + count
        if result.connected < viewers and errors:
            worst = max(errors, key=lambda reason: errors[reason])
            result.error = f"{viewers - result.connected} not connected ({worst})"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
        if server is not None and server.log_tail():
            print(f"\n  server log:\n{server.log_tail()}", end="")
    finally:
        for _, pipe in workers:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("close",))
        for process, pipe in workers:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
            pipe.close()
        if server is not None:
            await stop_server(server)
    verdict = "pass" if result.ok else f"FAIL ({result.why_not()})"
    print(
        f" connected {result.connected} in {result.ramp_s:.1f} s, "
        f"p99 {result.percentile(0.99):.1f} ms, server CPU {result.server_cpu:.0%}: {verdict}",
        flush=True,
    )
    return result


async def _recv(pipe: Pipe, timeout_s: float) -> Any:
    ready = await asyncio.to_thread(pipe.poll, timeout_s)
    if not ready:
        raise TimeoutError(f"a load generator did not answer within {timeout_s:.0f} s")
    return pipe.recv()


def _workers_cpu(workers: list[tuple[multiprocessing.process.BaseProcess, Pipe]]) -> float:
    total = 0.0
    for process, _ in workers:
        if process.pid is not None:
            with contextlib.suppress(OSError):
                total += proc_cpu_s(process.pid)
    return total


async def _redis_cpu(redis: aioredis.Redis) -> float:
    try:
        info = await redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    except Exception:
        return math.nan


# -- the plan: counts, the search below a failure, the budget --------------------------------


async def bench(args: argparse.Namespace, kinds: list[str]) -> dict[str, list[Result]]:
    redis = aioredis.Redis.from_url(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    started = time.monotonic()
    results: dict[str, list[Result]] = {kind: [] for kind in kinds}
    logs = args.logs or Path(tempfile.mkdtemp(prefix="live-fanout-"))
    logs.mkdir(parents=True, exist_ok=True)
    try:
        await redis.ping()
        for kind in kinds:
            failed_at = 0
            for viewers in args.viewers:
                skip = failed_at and kind != "live" and not args.no_skip
                if skip or time.monotonic() - started > args.budget:
                    results[kind].append(Result(kind, viewers, skipped=True))
                    continue
                result = await run_one(args, kind, viewers, redis, logs)
                results[kind].append(result)
                if not result.ok and not failed_at:
                    failed_at = viewers
            await _search(args, kind, results[kind], failed_at, started, redis, logs)
    finally:
        await redis.aclose()
        if args.logs is None:
            shutil.rmtree(logs, ignore_errors=True)
    return results


async def _search(
    args: argparse.Namespace,
    kind: str,
    results: list[Result],
    failed_at: int,
    started: float,
    redis: aioredis.Redis,
    logs: Path,
) -> None:
    """Narrow down the largest passing count below the first failure (bounded runs)."""
    if not failed_at:
        return
    low = max((r.viewers for r in results if r.ok and r.viewers < failed_at), default=0)
    high = failed_at
    for _ in range(args.search):
        if time.monotonic() - started > args.budget:
            break
        failed = next(r for r in results if r.viewers == high)
        # a live viewer gets one frame per tick (50 ms by default), a peer's one per event
        per_viewer = 1000 / (args.tick_ms or 50) if kind == "live" else args.rate
        guess = _estimate(failed, results, per_viewer)
        if low == 0:
            candidate = min(high // 2, guess) if guess else high // 2
        else:
            candidate = guess if low < guess < high else round(math.sqrt(low * high))
        candidate = _round(max(candidate, MIN_VIEWERS))
        if not low < candidate < high:  # the estimate rounded onto a count already tried
            candidate = _round(round(math.sqrt(max(low, MIN_VIEWERS) * high)))
        if not low < candidate < high or high / max(low, 1) < 1.25:
            break
        result = await run_one(args, kind, candidate, redis, logs)
        results.append(result)
        if result.ok:
            low = candidate
        else:
            high = candidate


def _estimate(failed: Result, results: list[Result], per_viewer: float) -> int:
    """Viewers a server that failed could serve: 80% of the frames it did deliver per second,
    over the frames a viewer gets per second when the server keeps up (as measured in a passing
    run; else `per_viewer`)."""
    if not failed.window_s or not failed.frames:
        return 0
    passing = [r for r in results if r.ok and r.frames]
    if passing:
        per_viewer = passing[0].per_s(passing[0].frames) / passing[0].viewers
    return int(0.8 * failed.per_s(failed.frames) / per_viewer)


def _round(n: int) -> int:
    """Two significant digits, so the counts read well."""
    if n < 100:
        return n
    scale = int(10 ** (len(str(n)) - 2))
    return n // scale * scale


# -- the report -----------------------------------------------------------------------------


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def report(args: argparse.Namespace, results: dict[str, list[Result]]) -> None:
    head = (
        f"{'server':<16}{'viewers':>8}{'conn':>7}{'events/s':>11}{'frames/s':>10}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'srv CPU':>8}{'gen CPU':>8}{'other':>6}"
        f"{'KiB/conn':>9}  p99<250"
    )
    print()
    print(
        f"workload: one room, {args.rate:g} events/s (a pin every {args.pin_every:g} s, "
        f"1/5 stock, rest comments), window {args.duration:g} s after {WARM_UP_S:g} s warm-up; "
        f"server pinned to CPU {','.join(map(str, args.server_cpus)) or 'any'}, "
        f"{args.workers} generator process(es) on CPU {','.join(map(str, args.gen_cpus)) or 'any'}"
    )
    print(
        "CPU in % of one core: srv the server process, gen the load generators and publisher, "
        "other what else ran on the machine (not this bench, Redis or the network's softirq); "
        "lag over every "
        "event of ~"
        f"{args.probes} probe viewers"
    )
    print(head)
    print("-" * len(head))
    for kind, rows in results.items():
        for r in sorted(rows, key=lambda row: row.viewers):
            if r.skipped:
                print(f"{LABELS[kind]:<16}{r.viewers:>8}{'':>7}  skipped (a smaller count failed)")
                continue
            flag = "yes" if r.ok else f"no: {r.why_not()}"
            if r.gen_bound:
                flag += " [generator saturated]"
            print(
                f"{LABELS[kind]:<16}{r.viewers:>8}{r.connected:>7}"
                f"{_fmt(r.per_s(r.events), ',.0f'):>11}{_fmt(r.per_s(r.frames), ',.0f'):>10}"
                f"{_fmt(r.percentile(0.50), '.1f'):>8}{_fmt(r.percentile(0.99), '.1f'):>8}"
                f"{_fmt(r.lag_max, '.0f'):>8}{_fmt(100 * r.server_cpu, '.0f'):>8}"
                f"{_fmt(100 * r.gen_cpu, '.0f'):>8}{_fmt(100 * r.other_cpu, '.0f'):>6}"
                f"{_fmt(r.kib_per_connection, '.1f'):>9}  {flag}"
            )
    print()
    for kind, rows in results.items():
        for r in sorted(rows, key=lambda row: row.viewers):
            if r.skipped or r.error:
                continue
            print(
                f"  {LABELS[kind]} {r.viewers}: published {r.published.in_window} events in the "
                f"window ({r.published.in_window / max(r.window_s, 1e-9):.0f}/s, slowest "
                f"{r.published.slowest_ms:.1f} ms), {r.per_s(r.bytes) / 1e6:.1f} MB/s delivered, "
                f"pins {r.pins}/{r.pins_expected} on {r.probes} probes, ramp {r.ramp_s:.1f} s at "
                f"{_fmt(100 * r.ramp_cpu, '.0f')}% server CPU, "
                f"RSS idle {r.rss_idle / 2**20:.0f} MiB / connected "
                f"{r.rss_connected / 2**20:.0f} MiB / loaded {r.rss_load / 2**20:.0f} MiB, "
                f"redis CPU {_fmt(100 * r.redis_cpu, '.0f')}%, "
                f"softirq {_fmt(100 * r.irq_cpu, '.0f')}%"
            )
    best = {kind: _best(rows) for kind, rows in results.items()}
    print()
    print(f"largest room with p99 < {P99_GOAL_MS:.0f} ms, one server process on one core:")
    for kind, rows in results.items():
        passing = best[kind]
        failures = [r.viewers for r in rows if not r.ok and not r.skipped]
        above = (
            f" (fails at {min(f for f in failures if f > passing.viewers)})"
            if passing and any(f > passing.viewers for f in failures)
            else (" (every count tried passed)" if passing else "")
        )
        if passing is None:
            tried = min((r.viewers for r in rows if not r.skipped), default=0)
            print(f"  {LABELS[kind]:<16} none of the counts tried (down to {tried})")
            continue
        per_core = passing.viewers / max(passing.server_cpu, 1e-9)
        print(
            f"  {LABELS[kind]:<16} {passing.viewers:>6} viewers{above}; at that count the server "
            f"used {passing.server_cpu:.0%} of a core ({per_core:,.0f} viewers per CPU-second)"
        )
    ours = best.get("live")
    if ours is not None:
        every = all(r.ok for r in results["live"] if not r.skipped)
        at_least = ">= " if every else ""
        for peer in ("node", "socketio"):
            theirs = best.get(peer)
            if peer not in results:
                continue
            if theirs is None:
                print(f"  live / {LABELS[peer]}: no passing count for the peer")
                continue
            ratio = ours.viewers / theirs.viewers
            cpu_ratio = (ours.viewers / ours.server_cpu) / (theirs.viewers / theirs.server_cpu)
            goal = GOAL_RATIO[peer]
            print(
                f"  live / {LABELS[peer]}: {at_least}{ratio:.1f}x the viewers per server core "
                f"(goal {goal:g}x: {'met' if ratio >= goal else 'not met'}); "
                f"{cpu_ratio:.1f}x the viewers per CPU-second used"
            )
        ten_k = next((r for r in results["live"] if r.viewers >= 10_000 and r.ok), None)
        print(f"  10k viewers in one room on this machine: {'yes' if ten_k else 'no'}")


def _best(rows: list[Result]) -> Result | None:
    passing = [r for r in rows if r.ok]
    return max(passing, key=lambda r: r.viewers) if passing else None


# -- command line ---------------------------------------------------------------------------


def _cpus(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--viewers", default="1000,5000,10000", help="comma-separated counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--only", choices=KINDS, help="one server only")
    parser.add_argument("--rate", type=float, default=200.0, help="room events per second")
    parser.add_argument("--pin-every", type=float, default=3.0, help="seconds between pins")
    parser.add_argument(
        "--tick-ms", type=int, default=0, help="LIVE_TICK_MS for live (default: its own)"
    )
    parser.add_argument(
        "--probes", type=int, default=500, help="viewers whose every event is timed"
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="handshakes in flight per worker"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds to connect all"
    )
    parser.add_argument("--search", type=int, default=3, help="extra runs below a failure")
    parser.add_argument("--no-skip", action="store_true", help="run counts above a failure too")
    parser.add_argument("--budget", type=float, default=330.0, help="no new run after this many s")
    parser.add_argument(
        "--live-module",
        default="live.cli",
        help="run as `python -m MODULE serve` for live (a wrapper module tries a gateway variant)",
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this directory")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="CPU priority of the servers and load generators, each in a session of its own "
        "(e.g. -10 as root when other work shares the machine)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generators")
    parser.add_argument(
        "--redis-url", default=os.environ.get("LIVE_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LIVE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "live-bench",
        help="where the peers are installed (outside the repository)",
    )
    args = parser.parse_args(argv)
    args.viewers = sorted({int(v) for v in args.viewers.split(",") if v.strip()})
    if not args.viewers or args.viewers[0] < 1 or args.duration <= 0 or args.rate <= 0:
        parser.error("--viewers, --duration and --rate must be positive")
    if args.workers < 1 or args.probes < 1 or args.concurrency < 1:
        parser.error("--workers, --probes and --concurrency must be positive")
    available = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(available) < 2:
        args.server_cpus, args.gen_cpus = (), ()
    else:
        args.server_cpus, args.gen_cpus = (available[0],), tuple(available[1:])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _raise_fd_limit()
    kinds = [args.only] if args.only else list(KINDS)
    install_peers([k for k in kinds if k != "live"], args.peers_dir)
    print(f"peers: {peer_versions(kinds, args.peers_dir) or 'none'}", flush=True)
    if args.gen_cpus:  # the publisher (this process) stays off the server's CPU too
        os.sched_setaffinity(0, args.gen_cpus)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = asyncio.run(bench(args, kinds))
    report(args, results)


if __name__ == "__main__":
    main()
