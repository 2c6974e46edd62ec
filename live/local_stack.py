"""`scripts/cluster up|down|status`: the production topology on one machine, to try and to
measure: a Redis Cluster of 3 primaries and 3 replicas on loopback ports (live/embedded_cluster.py),
PostgreSQL (the embedded one), N `live serve` nodes on the cluster, and HAProxy in front of them
(live/haproxy.py, from deploy/haproxy.cfg).

Everything lives under one directory (default `./.cluster`, `--dir`): each server's data and
log, and `stack.json` with what `up` started (ports, pids), which `down` and `status` read. The
processes run in sessions of their own and outlive `up`. `down` stops the nodes the way a
process manager does (SIGTERM: each drains, live/drain.py), then HAProxy, PostgreSQL and the
cluster; the data stays, and `up` starts the same cluster and database again.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from live import demo
from live.embedded_base import EmbeddedError, free_port, pid_alive
from live.embedded_cluster import LocalCluster
from live.embedded_postgres import EmbeddedPostgres
from live.haproxy import HAProxy, ready, signal_and_wait
from live.settings import Settings

REPO = Path(__file__).resolve().parents[1]
STATE = "stack.json"
NODE_START_TIMEOUT_S = 60.0
NODE_STOP_TIMEOUT_S = 30.0  # a node's drain (LIVE_DRAIN_S) and its own shutdown fit in it
DRAIN_S = 3.0  # above deploy/haproxy.cfg's time to take a node out (about 1 s)


def _state(directory: Path) -> dict[str, Any]:
    path = directory / STATE
    return json.loads(path.read_text()) if path.exists() else {}


def _save(directory: Path, state: dict[str, Any]) -> None:
    (directory / STATE).write_text(json.dumps(state, indent=1))


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _secret(directory: Path) -> str:
    """The nodes' shared JWT secret (a token minted by one is good on every node)."""
    path = directory / "jwt-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _start_node(directory: Path, name: str, port: int, env: dict[str, str], seed_demo: bool) -> int:
    node_dir = directory / name
    node_dir.mkdir(parents=True, exist_ok=True)
    node_env = env | {"LIVE_PORT": str(port), "LIVE_DATA_DIR": str(node_dir)}
    with (node_dir / "live.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "live.cli", "serve", *(["--demo"] if seed_demo else [])],
            cwd=REPO,
            env=node_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def _wait_ready(pids: dict[str, int], ports: dict[str, int], directory: Path) -> None:
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    waiting = set(pids)
    while waiting:
        for name in sorted(waiting):
            if not pid_alive(pids[name]):
                raise EmbeddedError(f"{name} exited at start: see {directory / name / 'live.log'}")
            if ready(f"http://127.0.0.1:{ports[name]}/readyz"):
                waiting.discard(name)
        if waiting and time.monotonic() > deadline:
            raise EmbeddedError(f"{', '.join(sorted(waiting))} never became ready")
        time.sleep(0.2)


def up(directory: Path, nodes: int, port: int) -> list[str]:
    """Start what is not running; returns the lines to print (the URLs to open)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = _state(directory)
    if state and any(pid_alive(pid) for pid in state.get("nodes", {}).values()):
        raise EmbeddedError(f"already up under {directory} (scripts/cluster status, or down)")
    cluster = LocalCluster.found(directory / "redis") or LocalCluster(directory / "redis")
    cluster.start()
    postgres = EmbeddedPostgres(directory / "postgres")
    postgres.start()
    if _port_taken(port):
        raise EmbeddedError(f"port {port} is taken: choose another with --port")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")} | {
        "LIVE_REDIS_URL": cluster.url,
        "LIVE_DATABASE_URL": postgres.url,
        "LIVE_JWT_SECRET": _secret(directory),
        "LIVE_DRAIN_S": str(DRAIN_S),
        "PYTHONPATH": str(REPO),
    }
    ports = {f"node{i}": free_port() for i in range(1, nodes + 1)}
    pids: dict[str, int] = {}
    state = {"redis": cluster.url, "postgres": postgres.url, "ports": ports, "nodes": pids}
    try:
        # The first node migrates the database and seeds the demo room; then the others.
        pids["node1"] = _start_node(directory, "node1", ports["node1"], env, seed_demo=True)
        _wait_ready(pids, ports, directory)
        for name in list(ports)[1:]:
            pids[name] = _start_node(directory, name, ports[name], env, seed_demo=False)
        _wait_ready(pids, ports, directory)
        proxy = HAProxy(directory / "haproxy", port, list(ports.values()), free_port())
        proxy.start(detached=True)
        state |= {"haproxy": proxy.url, "stats": f"http://127.0.0.1:{proxy.stats_port}/"}
    finally:
        _save(directory, state)
    settings = Settings(jwt_secret=env["LIVE_JWT_SECRET"])
    return [
        f"live behind HAProxy: {proxy.url}   (HAProxy stats: {state['stats']})",
        *(f"  {name}: http://127.0.0.1:{p} (pid {pids[name]})" for name, p in ports.items()),
        f"Redis Cluster: {cluster.url}",
        f"PostgreSQL: {postgres.url}",
        f"logs and data: {directory}",
        *demo.links(settings, proxy.url),
    ]


def down(directory: Path) -> list[str]:
    """Stop everything `up` started; the data stays."""
    state = _state(directory)
    lines: list[str] = []
    nodes: dict[str, int] = state.get("nodes", {})
    for name, pid in nodes.items():  # SIGTERM together: they drain at once
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            lines.append(f"{name}: draining (pid {pid})")
    for pid in nodes.values():
        signal_and_wait(pid, signal.SIGTERM, NODE_STOP_TIMEOUT_S)
    proxy_pid = _pid(directory / "haproxy" / "haproxy.pid")
    if proxy_pid is not None:
        signal_and_wait(proxy_pid, signal.SIGUSR1)
        lines.append("haproxy: stopped")
    postgres = EmbeddedPostgres(directory / "postgres")
    if (directory / "postgres").exists():
        postgres.stop()
        lines.append("postgres: stopped")
    cluster = LocalCluster.found(directory / "redis")
    if cluster is not None:
        cluster.stop()
        lines.append("redis cluster: stopped")
    if state:
        state["nodes"] = {}
        _save(directory, state)
    return lines or [f"nothing runs under {directory}"]


def status(directory: Path) -> list[str]:
    """One line per part: running or not, where."""
    state = _state(directory)
    if not state:
        return [f"nothing was started under {directory} (scripts/cluster up)"]
    lines = []
    proxy_pid = _pid(directory / "haproxy" / "haproxy.pid")
    lines.append(f"haproxy {state.get('haproxy', '?')}: {'up' if proxy_pid else 'down'}")
    for name, pid in state.get("nodes", {}).items():
        url = f"http://127.0.0.1:{state['ports'][name]}"
        health = "ready" if ready(f"{url}/readyz") else "not ready"
        lines.append(f"{name} {url}: {health if pid_alive(pid) else 'down'} (pid {pid})")
    cluster = LocalCluster.found(directory / "redis")
    if cluster is not None:
        roles = cluster.roles()
        lines += [f"redis 127.0.0.1:{port}: {role}" for port, role in roles.items()]
    lines.append(f"postgres {state.get('postgres', '?')}")
    return lines


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="default ./.cluster")
    parser.add_argument("--nodes", type=int, default=3, choices=[2, 3], help="live nodes")
    parser.add_argument("--port", type=int, default=8000, help="HAProxy's port (default 8000)")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    try:
        if args.command == "up":
            lines = up(directory, args.nodes, args.port)
        elif args.command == "down":
            lines = down(directory)
        else:
            lines = status(directory)
    except EmbeddedError as exc:
        print(f"scripts/cluster {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
