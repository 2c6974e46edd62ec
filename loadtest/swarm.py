"""Run locust headless as subprocesses: a master and K workers on this machine through locust's
own --master/--worker (K=0: one local process), with the scenario passed as `--live-*` options.

Workers on other machines join the same master with

    locust -f loadtest/locustfile.py --worker --master-host THIS_MACHINE --master-port PORT

(start the command with --master-port PORT and --expect-remote N so the master waits for them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from live.embedded_base import free_port
from loadtest.params import Params

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class SwarmPlan:
    url: str
    params: Params
    users: int
    spawn_rate: float
    duration_s: int
    out: Path
    workers: int = 1
    master_port: int = 0  # 0: any free port
    remote_workers: int = 0  # workers expected from other machines
    extra_env: dict[str, str] = field(default_factory=dict)


def live_options(params: Params) -> list[str]:
    options: list[str] = []
    for name, value in vars(params).items():
        if name == "jwt_secret":
            continue  # through the environment, not the process list
        options += ["--live-" + name.replace("_", "-"), str(value)]
    return options


class Swarm:
    def __init__(self, plan: SwarmPlan) -> None:
        self.plan = plan
        self.port = plan.master_port or free_port()
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.plan.extra_env)
        env["LIVE_LOADTEST_JWT_SECRET"] = self.plan.params.jwt_secret
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def master_command(self) -> list[str]:
        plan = self.plan
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        command += ["--host", plan.url, "-u", str(plan.users), "-r", str(plan.spawn_rate)]
        command += ["-t", f"{plan.duration_s}s", "--stop-timeout", "0"]
        command += ["--csv", str(plan.out / "locust"), "--csv-full-history"]
        command += ["--html", str(plan.out / "report.html"), "--only-summary"]
        expected = plan.workers + plan.remote_workers
        if expected:
            command += ["--master", "--expect-workers", str(expected)]
            command += ["--master-bind-port", str(self.port)]
            if not plan.remote_workers:
                command += ["--master-bind-host", "127.0.0.1"]
        return command + live_options(plan.params)

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", "127.0.0.1", "--master-port", str(self.port),
        ]  # fmt: skip

    def start(self) -> None:
        env = self._env()
        out = self.plan.out
        with (out / "locust-master.log").open("wb") as log:
            self.master = subprocess.Popen(
                self.master_command(), env=env, stdout=log, stderr=subprocess.STDOUT
            )
        for index in range(self.plan.workers):
            with (out / f"locust-worker-{index + 1}.log").open("wb") as log:
                self.workers.append(
                    subprocess.Popen(
                        self.worker_command(), env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )

    def pids(self) -> list[int]:
        return [p.pid for p in [self.master, *self.workers] if p is not None]

    def running(self) -> bool:
        return self.master is not None and self.master.poll() is None

    def finish(self, timeout_s: float = 30.0) -> int:
        """Wait for the master (then the workers); its exit code. Kills what overstays."""
        code = 1
        if self.master is not None:
            try:
                code = self.master.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
        for worker in self.workers:
            try:
                worker.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        return code

    def kill(self) -> None:
        for process in [self.master, *self.workers]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
