"""What the `live loadtest` commands share around their simulations: the flags naming the
service's PostgreSQL, and the run itself (bad flags exit 2, the report dir, a service that cannot
be set up or reached exits 1, Ctrl-C 130)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest import scenario
from loadtest.api import TransportError
from loadtest.service import ServiceError
from loadtest.tokens import SecretMissing

# A service that could not be started, set up or reached, or a JWT secret nobody gave.
SETUP_ERRORS: tuple[type[Exception], ...] = (
    ServiceError,
    scenario.SetupError,
    TransportError,
    SecretMissing,
)


def add_database_flags(parser: Any, used_for: str) -> None:
    """--database-url and --database-schema: the PostgreSQL of a service given with --url."""
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=os.environ.get("LIVE_DATABASE_URL", ""),
        help=f"with --url: the service's PostgreSQL, {used_for} (default LIVE_DATABASE_URL)",
    )
    parser.add_argument(
        "--database-schema",
        metavar="NAME",
        default=os.environ.get("LIVE_DATABASE_SCHEMA", "public"),
        help="with --url: the service's schema (default LIVE_DATABASE_SCHEMA, else public)",
    )


def run_simulation(
    simulate: Callable[[argparse.Namespace, Path], int],
    args: argparse.Namespace,
    problem: str | None,
    out_name: str,
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """`simulate`'s exit code, given the report dir (--out, or ./loadtest-out/ with `out_name`
    formatted by strftime); 2 for a `problem` with the flags, 1 for a setup error or one of
    `errors` (one line on stderr each), 130 on Ctrl-C."""
    if problem:
        print(f"live loadtest: error: {problem}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("loadtest-out") / time.strftime(out_name)
    out.mkdir(parents=True, exist_ok=True)
    try:
        return simulate(args, out.resolve())
    except (*SETUP_ERRORS, *errors) as exc:
        print(f"live loadtest: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
