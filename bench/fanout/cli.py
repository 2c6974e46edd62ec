"""The command line: arguments, the peers' installation, the runs and the report."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .peers import install_peers, peer_versions
from .procstats import raise_fd_limit, split_cpus
from .report import report
from .run import bench
from .servers import add_store_options

KINDS = ("live", "node", "socketio")
PROXY_KINDS = ("live", "live-haproxy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=(PACKAGE_DOC or "").split("\n\n")[0]
    )
    parser.add_argument("--viewers", default="1000,5000,10000", help="comma-separated counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--only", choices=KINDS, help="one server only")
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="only what HAProxy costs: one live node direct beside two behind HAProxy "
        "(deploy/haproxy.cfg), at each count (no peers)",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="room events per second")
    parser.add_argument("--pin-every", type=float, default=3.0, help="seconds between pins")
    parser.add_argument(
        "--tick-ms", type=int, default=0, help="LIVE_TICK_MS for live (default: its own)"
    )
    parser.add_argument(
        "--probes", type=int, default=500, help="viewers whose every event is timed"
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="handshakes in flight per worker"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds to connect all"
    )
    parser.add_argument("--search", type=int, default=3, help="extra runs below a failure")
    parser.add_argument("--no-skip", action="store_true", help="run counts above a failure too")
    parser.add_argument("--budget", type=float, default=330.0, help="no new run after this many s")
    parser.add_argument(
        "--live-module",
        default="live.cli",
        help="run as `python -m MODULE serve` for live (a wrapper module tries a gateway variant)",
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this directory")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="CPU priority of the servers and load generators, each in a session of its own "
        "(e.g. -10 as root when other work shares the machine)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generators")
    add_store_options(parser)
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "live-bench",
        help="where the peers are installed (outside the repository)",
    )
    args = parser.parse_args(argv)
    args.viewers = sorted({int(v) for v in args.viewers.split(",") if v.strip()})
    if not args.viewers or args.viewers[0] < 1 or args.duration <= 0 or args.rate <= 0:
        parser.error("--viewers, --duration and --rate must be positive")
    if args.workers < 1 or args.probes < 1 or args.concurrency < 1:
        parser.error("--workers, --probes and --concurrency must be positive")
    args.server_cpus, args.gen_cpus = split_cpus(args.no_pin)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    kinds = list(PROXY_KINDS) if args.proxy else [args.only] if args.only else list(KINDS)
    install_peers([k for k in kinds if not k.startswith("live")], args.peers_dir)
    print(f"peers: {peer_versions(kinds, args.peers_dir) or 'none'}", flush=True)
    if args.gen_cpus:  # the publisher (this process) stays off the server's CPU too
        os.sched_setaffinity(0, args.gen_cpus)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = asyncio.run(bench(args, kinds))
    report(args, results)
