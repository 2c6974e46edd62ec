"""A throwaway `live serve` for one simulation: its own temporary data dir, embedded Redis and
PostgreSQL, a fresh JWT secret, a free port; stopped (SIGTERM) and removed afterwards. Given a
`redis_url` it uses that Redis instead of an embedded one (a chaos run's Redis of its own)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from live.embedded_base import free_port
from loadtest.api import Api, TransportError

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
BANNER = re.compile(r"redis (\S+), postgres (\S+),")


class ServiceError(RuntimeError):
    pass


class EmbeddedService:
    def __init__(
        self, log_path: Path, *, workers: int = 1, keep_data: bool = False, redis_url: str = ""
    ) -> None:
        self.log_path = log_path
        self.given_redis_url = redis_url
        self.workers = workers
        self.keep_data = keep_data
        self.data_dir = Path(tempfile.mkdtemp(prefix="live-loadtest-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(48)
        self.redis_url = ""
        self.database_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The environment of the service and of `live reconcile` against its stores."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
        env.update(
            LIVE_DATA_DIR=str(self.data_dir),
            LIVE_JWT_SECRET=self.secret,
            LIVE_LOG_LEVEL="warning",
        )
        if self.redis_url:
            env.update(LIVE_REDIS_URL=self.redis_url, LIVE_DATABASE_URL=self.database_url)
        elif self.given_redis_url:
            env.update(LIVE_REDIS_URL=self.given_redis_url)
        return env

    def start(self) -> None:
        command = [sys.executable, "-m", "live.cli", "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        probe = Api(self.url, timeout_s=2)
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServiceError(f"live serve exited: {self._tail()}")
            try:
                if probe.get("/readyz").status == 200:
                    break
            except TransportError:
                pass
            time.sleep(0.2)
        else:
            raise ServiceError(f"live serve was not ready in {READY_TIMEOUT_S:.0f} s")
        probe.close()
        match = BANNER.search(self.log_path.read_text(errors="replace"))
        if match is None:
            raise ServiceError(f"no banner from live serve: {self._tail()}")
        self.redis_url, self.database_url = match[1], match[2]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-5:]) or "(no output)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedService:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
