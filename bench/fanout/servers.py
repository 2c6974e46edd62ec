"""The servers under test, each its own process pinned as asked: live (`live serve` on the given
Redis and PostgreSQL, under a prefix and schema of its own that are removed afterwards; or two
such nodes behind HAProxy) and the two peers, with the way each one's room events are
published."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from gateway.auth import mint
from live import haproxy
from live.embedded import free_port
from rooms.actors import Role
from rooms.log import RoomLog

from .peers import PEER_SOURCES, ROOT, peer_python
from .procstats import prioritize
from .workload import Publish, Workload, envelope, msgpack

SECRET = "fanout-bench-secret-0123456789abcdef0123456789"


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
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)  # more live nodes
    proxy: subprocess.Popen[bytes] | None = None  # HAProxy in front of the nodes (`port` is its)
    position: Callable[[], Awaitable[tuple[str, int]]] | None = None  # live: the log's (epoch, seq)

    @property
    def pids(self) -> list[int]:
        """The server processes (every live node; not the proxy)."""
        return [self.proc.pid, *(other.pid for other in self.others)]

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """--redis-url and --database-url: the servers live runs on (the environment's, or this
    machine's)."""
    parser.add_argument(
        "--redis-url", default=os.environ.get("LIVE_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LIVE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )


def spawn(
    cmd: list[str], env: dict[str, str], log_path: Path, args: argparse.Namespace, cwd: Path
) -> subprocess.Popen[bytes]:
    out = log_path.open("wb")
    cpus, nice = args.server_cpus, args.nice

    def pin() -> None:  # in the child, after setsid
        if cpus:
            os.sched_setaffinity(0, cpus)
        prioritize(nice)

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


async def wait_ready(
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


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)


async def stop_server(server: Server) -> None:
    await asyncio.gather(
        *(_stop(p) for p in [server.proc, *server.others, *filter(None, [server.proxy])])
    )
    for step in reversed(server.cleanup):
        try:
            await step()
        except Exception as exc:
            print(f"  cleanup failed: {exc}", file=sys.stderr)


async def start_live(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> Server:
    """One live node, viewers straight on it."""
    return await _start_live(args, redis, logs, nodes=1, proxied=False)


async def start_live_proxied(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> Server:
    """Two live nodes on the same Redis, room and schema, behind HAProxy (deploy/haproxy.cfg,
    as scripts/cluster runs it), viewers on the proxy; the proxy runs on the servers' CPU."""
    return await _start_live(args, redis, logs, nodes=2, proxied=True)


async def _start_live(
    args: argparse.Namespace, redis: aioredis.Redis, logs: Path, nodes: int, proxied: bool
) -> Server:
    tag = uuid.uuid4().hex[:10]
    prefix, schema, room = f"bench-{tag}:", f"bench_{tag}", f"fanout-{tag}"
    env = {
        **os.environ,
        "LIVE_REDIS_URL": args.redis_url,
        "LIVE_DATABASE_URL": args.database_url,
        "LIVE_REDIS_PREFIX": prefix,
        "LIVE_DATABASE_SCHEMA": schema,
        "LIVE_JWT_SECRET": SECRET,
        "LIVE_LOG_LEVEL": "warning",
        "LIVE_DRAIN_S": "0",
    }
    if args.tick_ms:
        env["LIVE_TICK_MS"] = str(args.tick_ms)
    ports = [free_port() for _ in range(nodes)]
    procs = []
    for n, port in enumerate(ports):
        cmd = [sys.executable, "-m", args.live_module, "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(port)]
        node_env = env | {"LIVE_DATA_DIR": str(logs / f"data-{tag}-{n}")}
        procs.append(spawn(cmd, node_env, logs / f"live-{tag}-{n}.log", args, ROOT))
    room_log = RoomLog(redis, prefix)

    async def publish(kind: str, i: int, data: dict[str, Any]) -> None:
        lane, key = Workload.route(kind)
        await room_log.publish(room, kind, data, lane=lane, key=key)

    kind = "live-haproxy" if proxied else "live"
    log_path = logs / f"live-{tag}-0.log"
    server = Server(kind, ports[0], procs[0], log_path, room, f"/ws/rooms/{room}", publish)
    server.others = procs[1:]
    server.position = lambda: room_log.position(room)
    server.cleanup.append(lambda: _drop_schema(args.database_url, schema))
    server.cleanup.append(lambda: _delete_keys(redis, prefix))
    for proc, port in zip(procs, ports, strict=True):
        await wait_ready(proc, f"http://127.0.0.1:{port}/readyz", 60)
    if proxied:
        server.port = free_port()
        config = logs / f"haproxy-{tag}.cfg"
        config.write_text(haproxy.render(server.port, ports, free_port()))
        server.proxy = spawn(
            [haproxy.binary(), "-db", "-f", str(config)],
            env,
            logs / f"haproxy-{tag}.log",
            args,
            ROOT,
        )
        await wait_ready(server.proxy, f"http://127.0.0.1:{server.port}/readyz", 30)
    token = mint(SECRET, sub="bench-host", role=Role.HOST, room=room, ttl_s=3600)
    body = json.dumps({"title": "fanout bench"}).encode()
    url = f"http://127.0.0.1:{server.port}/api/rooms/{room}"
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
    proc = spawn(cmd, dict(os.environ), log_path, args, PEER_SOURCES)
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
    await wait_ready(proc, f"http://127.0.0.1:{port}/socket.io/", 30, any_status=True)
    return Server("socketio", port, proc, log_path, room, path, publish)


async def start_node(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> Server:
    tag = uuid.uuid4().hex[:10]
    key, room, port = f"bench-io-{tag}", f"fanout-{tag}", free_port()
    script = str(args.peers_dir / "node" / "node_server.js")
    log_path = logs / f"node-{tag}.log"
    cmd = ["node", script, str(port), args.redis_url, key]
    proc = spawn(cmd, dict(os.environ), log_path, args, args.peers_dir / "node")
    channel = f"{key}#/#{room}#"
    uid = f"bench-{tag}"

    async def publish(kind: str, i: int, data: dict[str, Any]) -> None:
        packet = {"type": 2, "data": [kind, envelope(kind, i, data)], "nsp": "/"}
        options = {"rooms": [room], "except": [], "flags": {}}
        await redis.publish(channel, msgpack([uid, packet, options]))

    path = f"/socket.io/?EIO=4&transport=websocket&room={room}"
    await wait_ready(proc, f"http://127.0.0.1:{port}/healthz", 30)
    return Server("node", port, proc, log_path, room, path, publish)


STARTERS = {
    "live": start_live,
    "live-haproxy": start_live_proxied,
    "socketio": start_socketio,
    "node": start_node,
}
