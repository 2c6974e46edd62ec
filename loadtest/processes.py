"""The processes of a simulation, read from /proc: a service's workers, their connections, and
SIGKILL for the chaos faults."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def child_pids(parent_pid: int) -> list[int]:
    """The direct children of `parent_pid` (e.g. uvicorn's workers), read from /proc."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent_pid:
            children.append(int(entry.name))
    return sorted(children)


def worker_pids(parent_pid: int) -> list[int]:
    """The worker processes among `parent_pid`'s children: multiprocessing's helpers (resource
    tracker, forkserver) left out, so what remains are uvicorn's workers of `live serve`."""
    workers = []
    for pid in child_pids(parent_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmdline and b"forkserver" not in cmdline:
            workers.append(pid)
    return workers


def established_connections(pid: int, local_port: int) -> int:
    """How many established TCP connections process `pid` holds on `local_port` (e.g. the
    clients a worker of `live serve` is serving), read from /proc; 0 if it is gone."""
    try:
        inodes = {
            link[len("socket:[") : -1]
            for fd in Path(f"/proc/{pid}/fd").iterdir()
            if (link := _readlink(fd)).startswith("socket:[")
        }
    except OSError:
        return 0
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    count += 1
    return count


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def kill(pid: int) -> None:
    """SIGKILL `pid` (nothing if it is already gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
