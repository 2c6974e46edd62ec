"""A `redis-server` of a test's own (the embedded Redis's valkey-server), to restart, kill and
roll back: the faults a shared Redis must never see."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from live.embedded import EmbeddedRedis, free_port

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


def redis_server_binary() -> Path:
    return EmbeddedRedis.binary()  # the embedded Redis's own valkey-server


class OwnRedis:
    """One server on a loopback port, data in `directory`; it keeps its port and directory
    across restarts, so it comes back with what it had persisted."""

    def __init__(self, directory: Path, appendonly: bool) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self._config = directory / "redis.conf"
        # No RDB save points: what survives is the AOF (every write fsynced) or an explicit SAVE.
        self._config.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndir {directory}\ndbfilename dump.rdb\n"
            f"appendonly {'yes' if appendonly else 'no'}\nappendfsync always\n"
            'save ""\nlogfile redis.log\n'
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def dump_file(self) -> Path:
        return self.directory / "dump.rdb"

    def _client(self) -> redis.Redis:
        # No retries: SHUTDOWN closes the connection, and a retry would only wait for nothing.
        return redis.Redis(
            "127.0.0.1",
            self.port,
            socket_timeout=5,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )

    def _ready(self, client: redis.Redis) -> bool:
        try:
            return int(client.info("persistence")["loading"]) == 0
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [str(redis_server_binary()), str(self._config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        with self._client() as client:
            while not self._ready(client):
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.log_tail()}")
                time.sleep(0.02)

    def run_id(self) -> str:
        with self._client() as client:
            return str(client.info("server")["run_id"])

    def shutdown(self) -> None:
        """A clean stop: SHUTDOWN writes out what the server persists."""
        process = self._running()
        with self._client() as client:
            client.shutdown()  # redis-py swallows the connection the server closes
        process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: whatever was not persisted yet is lost."""
        process = self._running()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def save_snapshot(self, to: Path) -> None:
        """SAVE (synchronous), then a copy of the RDB file it wrote."""
        with self._client() as client:
            assert client.save()
        shutil.copyfile(self.dump_file, to)

    def restore_snapshot(self, source: Path) -> None:
        assert self.process is None, "restore into a stopped server only"
        shutil.copyfile(source, self.dump_file)

    def stop(self) -> None:
        """Teardown: kill it if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.process = None

    def log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    def _running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None and self.process.poll() is None, "not running"
        return self.process
