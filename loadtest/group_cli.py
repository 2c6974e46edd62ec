"""`live loadtest group-deal`: its flags, their checks (exit 2) and the run (loadtest/group_sim.py);
added to `live loadtest` by loadtest/cli.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import asyncpg

from loadtest.command import add_database_flags, run_simulation


def add_parser(commands: Any) -> None:
    from loadtest import group_sim

    deal = commands.add_parser(
        "group-deal",
        help="a group deal with N buyers starting, joining and leaving groups; judged",
        description=group_sim.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deal.add_argument("--url", metavar="URL", help="a running service (default: start one)")
    deal.add_argument("--jwt-secret", metavar="SECRET", default="", help="with --url")
    add_database_flags(deal, "read by the verdict")
    deal.add_argument("--keep-data", action="store_true", help="keep the service's data dir")
    deal.add_argument("--buyers", metavar="N", type=int, default=40)
    deal.add_argument("--duration", metavar="S", type=int, default=15, help="s of shopping")
    deal.add_argument("--group-size", metavar="K", type=int, default=3, help="2-100")
    deal.add_argument("--window", metavar="S", type=int, default=5, help="a group's seconds")
    deal.add_argument("--stock", metavar="S", type=int, default=60)
    deal.add_argument("--limit", metavar="L", type=int, default=2, help="items per buyer")
    deal.add_argument("--price-cents", metavar="C", type=int, default=4000)
    deal.add_argument("--group-price-cents", metavar="C", type=int, default=2500)
    deal.add_argument(
        "--join-share", metavar="P", type=float, default=0.7, help="join an open group (0-1)"
    )
    deal.add_argument(
        "--leave-share", metavar="P", type=float, default=0.25, help="leave a group (0-1)"
    )
    deal.add_argument(
        "--ws-share", metavar="P", type=float, default=0.3, help="buyers over WebSockets (0-1)"
    )
    deal.add_argument("--seed", metavar="N", type=int, default=None, help="the crowd's dice")
    deal.add_argument("--skip-reconcile", action="store_true", help="no `live reconcile`")
    deal.add_argument("--out", metavar="DIR", type=Path, default=None, help="report dir")


def _problem(args: argparse.Namespace) -> str | None:
    if min(args.buyers, args.duration, args.window, args.stock, args.limit) < 1:
        return "--buyers, --duration, --window, --stock and --limit must be positive"
    if not 2 <= args.group_size <= min(100, args.stock):
        return "--group-size must be between 2 and 100, and at most --stock"
    if not 0 <= args.group_price_cents <= args.price_cents:
        return "--group-price-cents must be between 0 and --price-cents"
    if args.limit > args.stock:
        return "--limit cannot exceed --stock"
    if not all(0 <= share <= 1 for share in (args.join_share, args.leave_share, args.ws_share)):
        return "--join-share, --leave-share and --ws-share must be between 0 and 1"
    if args.url and not args.database_url:
        return "with --url the verdict reads the service's PostgreSQL: give --database-url"
    return None


def run(args: argparse.Namespace) -> int:
    from loadtest import group_sim

    return run_simulation(
        group_sim.simulate,
        args,
        _problem(args),
        "group-%Y%m%d-%H%M%S",
        errors=(TimeoutError, OSError, asyncpg.PostgresError),  # the last two: the verdict's PG
    )
