"""HAProxy in front of `live serve` nodes on this machine, from the reference configuration
deploy/haproxy.cfg (the one file operators read): its lines marked `# @bind` and `# @stats` get
the addresses chosen here and the block between `# @nodes-begin` and `# @nodes-end` one `server`
line per node; the rest (health checks on /readyz, leastconn, redispatch, tunnel timeouts) is
used as it is. For scripts/cluster, the tests and bench/fanout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from live.embedded_base import EmbeddedError, pid_alive, pid_in

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "haproxy.cfg"
START_TIMEOUT_S = 15.0


def binary() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if found is None:
        raise EmbeddedError("HAProxy is not installed: apt-get install -y haproxy")
    return found


def render(port: int, nodes: list[int], stats_port: int, template: Path = TEMPLATE) -> str:
    """deploy/haproxy.cfg for a frontend on 127.0.0.1:`port` over nodes on 127.0.0.1:`nodes`."""
    out: list[str] = []
    skipping = False
    for line in template.read_text().splitlines():
        mark = line.partition("# @")[2]
        if mark.startswith("nodes-begin"):
            skipping = True
            out.append(line)
            out += [f"    server node{i} 127.0.0.1:{p} check" for i, p in enumerate(nodes, 1)]
        elif mark.startswith("nodes-end"):
            skipping = False
            out.append(line)
        elif skipping:
            continue
        elif mark.startswith("bind"):
            out.append(f"    bind 127.0.0.1:{port}  # @bind")
        elif mark.startswith("stats"):
            out.append(f"    bind 127.0.0.1:{stats_port}  # @stats")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


class HAProxy:
    """One HAProxy process with its configuration, pid file and log under `directory`."""

    def __init__(self, directory: Path, port: int, nodes: list[int], stats_port: int) -> None:
        self.directory = directory
        self.port = port
        self.nodes = nodes
        self.stats_port = stats_port
        self.config = directory / "haproxy.cfg"
        self.pidfile = directory / "haproxy.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, detached: bool = False) -> None:
        """Start it and wait until it serves a ready node; `detached`: in a session of its own,
        outliving this process (scripts/cluster), else a child stopped with `stop`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(render(self.port, self.nodes, self.stats_port))
        check = subprocess.run(
            [binary(), "-c", "-q", "-f", str(self.config)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise EmbeddedError(f"haproxy refused {self.config}: {check.stderr.strip()}")
        log = (self.directory / "haproxy.log").open("ab")
        self.process = subprocess.Popen(
            [binary(), "-db", "-f", str(self.config), "-p", str(self.pidfile)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detached,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready(f"{self.url}/readyz"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"haproxy did not serve a ready node (see {self.directory})")
            time.sleep(0.1)
        self.pidfile.write_text(str(self.process.pid))

    def pid(self) -> int | None:
        return pid_in(self.pidfile)

    def stop(self) -> None:
        pid = self.process.pid if self.process is not None else self.pid()
        if pid is not None and pid_alive(pid):
            signal_and_wait(pid, signal.SIGUSR1)  # a soft stop: established tunnels end
        if self.process is not None:
            self.process.wait(timeout=5)
            self.process = None


def signal_and_wait(pid: int, signum: int, timeout_s: float = 10.0) -> None:
    """Send `signum`, wait up to `timeout_s` for the process to end, SIGKILL it if it did not."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def ready(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
