"""`live loadtest flash-sale`: one command that runs a flash-sale simulation and judges it.

It starts the service (or uses --url), creates a room, a product and a sale through the API, runs
locust headless (a master and --workers local workers through locust's own --master/--worker)
with viewers, buyers and a host, shows progress, then checks the business invariants through
the API and `live reconcile` and prints one verdict table. Exit code 0 when every invariant and
threshold holds, 1 otherwise, 2 for bad flags.

Written to --out: report.html (locust), chart.png, verdict.txt, verdict.json, summary.json,
timeline.jsonl, locust_*.csv and the logs of the service and of every locust process.

Chaos (--chaos redis-restart,redis-rollback,redis-flush,pg-stall,pg-cut,worker-kill, or all):
the faults are injected on a schedule over the time the sale sells (from 2 s after it opens to
the last seconds of buying, each with time after it for the sale to sell again), each logged
with its time. What each does and needs:

  redis-restart   Redis SIGKILLed, 2 s down, restarted with its data       own service
  redis-rollback  Redis back to a snapshot of 3 s before (lagging replica)  own service
  redis-flush     Redis FLUSHALL                                            own service
  pg-stall        the sale's row locked for 2x the io timeout (10 s), so    own service or
                  confirms time out (503)                                   --database-url
  pg-cut          the service's PostgreSQL connections terminated           as pg-stall
  worker-kill     one uvicorn worker SIGKILLed (--serve-workers 2 or more)  own service

"own service": the command starts the service itself (no --url) and gives it a Redis of its own
(LIVE_REDIS_URL) that it can kill, roll back and flush; with --url such faults are refused (exit
2). The verdict adds a row per fault: when it happened, the 503s, other 5xx and unanswered calls
until the next fault, and how long until the sale sold again (the first order after it; the
first hold when nobody confirmed). Buyers retry a 503 (after Retry-After) and a call without an
answer, reserve and confirm alike (same idempotency key or reservation), and a 503 is a promised
answer in a chaos run; any other 5xx fails the run ("no 5xx but 503"), as does a 201 confirm
whose order is not that buyer's. --max-error-rate is off by default with --chaos. Every reserve
and confirm is written to calls.json; chart.png marks each fault.

More load than one machine makes: run the command with --master-port PORT --expect-remote N
and start N workers elsewhere, each with the project installed:

    locust -f loadtest/locustfile.py --worker --master-host THIS_MACHINE --master-port PORT

(the master sends them every option, the JWT secret included; measure lag only between machines
whose clocks agree, since fan-out lag is the receiver's clock minus the server's `ts`). Against
a service on other machines use --url and, for `live reconcile`, the same LIVE_REDIS_URL,
LIVE_DATABASE_URL and LIVE_REDIS_PREFIX as the service (or --skip-reconcile).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest import chaos, group_cli, simulation
from loadtest.command import add_database_flags, run_simulation
from loadtest.faults import FaultError


def duration(text: str) -> int:
    """`20s`, `2m`, `1h30m` or plain seconds."""
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 20s, 2m, 90)")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def add_parser(subparsers: Any) -> None:
    """`loadtest` with its subcommands `flash-sale`, `auction` and `group-deal`, on the `live`
    command's subparsers."""
    loadtest = subparsers.add_parser(
        "loadtest", help="load simulations judged on the business invariants"
    )
    commands = loadtest.add_subparsers(dest="loadtest_command", required=True)
    sale = commands.add_parser(
        "flash-sale",
        help="a flash sale with N viewers and M buyers through locust; non-zero when broken",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = sale.add_argument_group("service")
    target.add_argument(
        "--url", metavar="URL", help="a running service (default: start one with its own data)"
    )
    target.add_argument(
        "--jwt-secret",
        metavar="SECRET",
        default="",
        help="with --url: its JWT secret (default LIVE_JWT_SECRET)",
    )
    target.add_argument(
        "--serve-workers",
        metavar="N",
        type=_positive(int),
        default=1,
        help="uvicorn workers of the service",
    )
    target.add_argument("--keep-data", action="store_true", help="keep the service's data dir")
    target.add_argument(
        "--chaos",
        metavar="FAULTS",
        default="",
        help=f"inject faults during the sale: {','.join(chaos.FAULTS)} or all (see above)",
    )
    add_database_flags(target, "for pg-stall and pg-cut")
    crowd = sale.add_argument_group("crowd")
    crowd.add_argument(
        "--viewers",
        metavar="N",
        type=int,
        default=200,
        help="viewers (WebSocket only, raw sockets, many per locust worker)",
    )
    crowd.add_argument("--buyers", metavar="M", type=_positive(int), default=50, help="buyers")
    crowd.add_argument(
        "--spawn-rate",
        metavar="R",
        type=_positive(float),
        default=50.0,
        help="viewers and buyers connected per second",
    )
    crowd.add_argument(
        "--probe-every",
        metavar="K",
        type=_positive(int),
        default=20,
        help="one viewer in K decodes every frame (fan-out lag, seq); the rest count frames",
    )
    crowd.add_argument(
        "--duration", metavar="T", type=duration, default=duration("20s"), help="e.g. 20s, 2m"
    )
    crowd.add_argument(
        "--comment-every", metavar="SECONDS", type=float, default=0.0, help="s between comments"
    )
    crowd.add_argument(
        "--host-every",
        metavar="SECONDS",
        type=_positive(float),
        default=3.0,
        help="s between host messages",
    )
    shop = sale.add_argument_group("sale")
    shop.add_argument("--stock", metavar="S", type=_positive(int), default=20)
    shop.add_argument(
        "--limit", metavar="L", type=_positive(int), default=1, help="items per buyer"
    )
    shop.add_argument("--hold-seconds", metavar="H", type=_positive(int), default=10)
    shop.add_argument(
        "--confirm-share", metavar="SHARE", type=float, default=0.7, help="holds confirmed (0-1)"
    )
    shop.add_argument(
        "--think-min", metavar="SECONDS", type=float, default=0.2, help="s before confirming"
    )
    shop.add_argument(
        "--think-max", metavar="SECONDS", type=float, default=2.0, help="s before confirming"
    )
    shop.add_argument(
        "--sale-at",
        metavar="SECONDS",
        type=float,
        default=None,
        help="s after start (default: ramp-up + 2)",
    )
    judge = sale.add_argument_group("verdict")
    judge.add_argument(
        "--max-p99-ms", metavar="X", type=float, default=0.0, help="reserve, confirm, fan-out"
    )
    judge.add_argument(
        "--max-error-rate",
        metavar="Y",
        type=float,
        default=None,
        help="failed actions share (default 0.01; off with --chaos)",
    )
    judge.add_argument(
        "--connect-within",
        metavar="S",
        type=_positive(float),
        default=30.0,
        help="every viewer and buyer connected this many s after the start",
    )
    judge.add_argument("--skip-reconcile", action="store_true", help="no `live reconcile`")
    judge.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="report dir (default ./loadtest-out/<time>)",
    )
    swarm = sale.add_argument_group("locust")
    swarm.add_argument(
        "--workers",
        metavar="K",
        dest="locust_workers",
        type=int,
        default=1,
        help="local locust workers (0: one process)",
    )
    swarm.add_argument(
        "--master-port", metavar="PORT", type=int, default=0, help="master port (default: free)"
    )
    swarm.add_argument(
        "--expect-remote", metavar="N", type=int, default=0, help="workers from other machines"
    )
    _add_auction(commands)
    group_cli.add_parser(commands)


def _add_auction(commands: Any) -> None:
    """`loadtest auction`: bidders and snipers against one auction (loadtest/auction_sim.py)."""
    from loadtest import auction_sim

    auction = commands.add_parser(
        "auction",
        help="an auction with N bidders and M snipers bursting in its last second; judged",
        description=auction_sim.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    auction.add_argument("--url", metavar="URL", help="a running service (default: start one)")
    auction.add_argument("--jwt-secret", metavar="SECRET", default="", help="with --url")
    auction.add_argument("--keep-data", action="store_true", help="keep the service's data dir")
    auction.add_argument("--bidders", metavar="N", type=_positive(int), default=50)
    auction.add_argument("--snipers", metavar="M", type=int, default=20, help="last-second bids")
    auction.add_argument(
        "--duration", metavar="S", type=_positive(int), default=10, help="the auction's seconds"
    )
    auction.add_argument("--snipe-window", metavar="S", type=int, default=2, help="0: sudden death")
    auction.add_argument("--max-extensions", metavar="K", type=int, default=3)
    auction.add_argument("--start-cents", metavar="C", type=_positive(int), default=1000)
    auction.add_argument("--increment-cents", metavar="C", type=_positive(int), default=100)
    auction.add_argument("--seed", metavar="N", type=int, default=None, help="the crowd's dice")
    auction.add_argument("--skip-reconcile", action="store_true", help="no `live reconcile`")
    auction.add_argument("--out", metavar="DIR", type=Path, default=None, help="report dir")


def auction(args: argparse.Namespace) -> int:
    from loadtest import auction_sim

    negative = args.snipers < 0 or args.snipe_window < 0 or args.max_extensions < 0
    problem = (
        "--snipers, --snipe-window and --max-extensions cannot be negative" if negative else None
    )
    return run_simulation(
        auction_sim.simulate, args, problem, "auction-%Y%m%d-%H%M%S", errors=(TimeoutError,)
    )


def run(args: argparse.Namespace) -> int:
    if args.loadtest_command == "flash-sale":
        return flash_sale(args)
    if args.loadtest_command == "auction":
        return auction(args)
    if args.loadtest_command == "group-deal":
        return group_cli.run(args)
    raise ValueError(f"unknown loadtest command {args.loadtest_command!r}")


def _check(args: argparse.Namespace) -> str | None:
    if importlib.util.find_spec("locust") is None:
        return "locust is not installed: pip install -e '.[load]'"
    if args.viewers < 0 or args.locust_workers < 0 or args.expect_remote < 0:
        return "--viewers, --workers and --expect-remote cannot be negative"
    if args.url and not args.url.startswith("http://"):
        return "--url: the viewers speak plain ws, give an http:// URL"
    if not 0 <= args.confirm_share <= 1:
        return "--confirm-share must be between 0 and 1"
    if args.limit > args.stock:
        return "--limit cannot exceed --stock"
    if not 0 <= args.think_min <= args.think_max:
        return "--think-min must be between 0 and --think-max"
    if args.duration < 5:
        return "--duration must be at least 5 s"
    if args.chaos:
        return _check_chaos(args)
    return None


def _check_chaos(args: argparse.Namespace) -> str | None:
    """Whether the faults can be reached and fit; a worker-kill raises --serve-workers to 2."""
    try:
        faults = chaos.parse(args.chaos)
        if chaos.WORKER_KILL in faults and not args.url and args.serve_workers < 2:
            print("live loadtest: worker-kill needs 2 workers: --serve-workers 2", flush=True)
            args.serve_workers = 2
        simulation.chaos_plan(args)
    except chaos.ChaosError as exc:
        return f"--chaos: {exc}"
    return None


def flash_sale(args: argparse.Namespace) -> int:
    return run_simulation(
        simulation.simulate, args, _check(args), "%Y%m%d-%H%M%S", errors=(FaultError,)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="live", description="live load tests")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
