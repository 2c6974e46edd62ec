"""Running `live loadtest <command>` as a user does, for the load tests' end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_loadtest(
    command: str, out: Path, *flags: str, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """`live loadtest COMMAND --out OUT FLAGS...` in a process of its own, its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "loadtest", command, "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
