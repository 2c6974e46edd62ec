"""`scripts/cluster up|status|down` end to end (live/local_stack.py): a Redis Cluster of 3
primaries and 3 replicas, PostgreSQL, two live nodes and HAProxy, then stopped (the nodes
drained)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from live_env import REPO

from live.embedded import free_port
from live.haproxy import binary


def stack(directory: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "live.local_stack", *args, "--dir", str(directory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_up_status_down(tmp_path: Path) -> None:
    binary()  # fails with what to install when HAProxy is missing
    port = free_port()
    try:
        printed = stack(tmp_path, "up", "--nodes", "2", "--port", str(port))
        proxy = f"http://127.0.0.1:{port}"
        assert f"live behind HAProxy: {proxy}" in printed
        assert f"viewer alice: {proxy}/watch/demo#token=" in printed
        room = httpx.get(f"{proxy}/api/rooms/demo", timeout=10)
        assert room.status_code == 200, room.text  # the demo room, through the proxy
        status = stack(tmp_path, "status")
        assert status.count(": ready") == 2
        assert status.count(": primary") == 3 and status.count(": replica") == 3
    finally:
        stopped = stack(tmp_path, "down")
    assert "node1: draining" in stopped and "redis cluster: stopped" in stopped
    after = stack(tmp_path, "status")
    assert ": ready" not in after and ": primary" not in after
