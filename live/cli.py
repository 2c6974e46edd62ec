"""The `live` command: serve, migrate, token, reconcile, webhooks (live/cli_webhooks.py),
loadtest, version."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import redis.asyncio as aioredis

from gateway import auth
from gateway.logs import uvicorn_log_config
from gateway.prometheus import MULTIPROC_ENV
from live import __version__, db
from live.cli_base import CliError
from live.embedded import EmbeddedError, EmbeddedServers
from live.migrations import runner
from live.redis_client import open_redis
from live.settings import Settings, SettingsError
from rooms.actors import Role


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"live: error: {message} (see live {self.prog.split()[-1]} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="live", description="Real-time backend for live-stream shopping.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve", help="run the service (embedded Redis/PostgreSQL by default)"
    )
    serve.add_argument("--host", help="bind address (LIVE_HOST)")
    serve.add_argument("--port", type=int, help="port (LIVE_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (LIVE_WORKERS)")
    serve.add_argument("--data-dir", help="embedded servers' data (LIVE_DATA_DIR)")
    serve.add_argument(
        "--demo", action="store_true", help="seed a demo room and print host and viewer links"
    )

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument("--data-dir", help="embedded servers' data (LIVE_DATA_DIR)")

    token = commands.add_parser("token", help="print a signed JWT for development and tests")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--room", required=True)
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--name", default="", help="display name")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.add_argument("--data-dir", help="where the development secret is kept (LIVE_DATA_DIR)")

    reconcile = commands.add_parser(
        "reconcile",
        help="compare Redis counts with PostgreSQL orders; non-zero on a broken invariant",
    )
    reconcile.add_argument(
        "sale", nargs="*", type=int, help="sale ids (default: every sale and auction)"
    )
    reconcile.add_argument(
        "--auction",
        metavar="ID",
        type=int,
        action="append",
        default=[],
        help="an auction to check (repeatable); with only these, no sale is checked",
    )
    reconcile.add_argument("--data-dir", help="embedded servers' data (LIVE_DATA_DIR)")

    from live import cli_webhooks
    from loadtest import cli as loadtest_cli

    cli_webhooks.add_parser(commands)
    loadtest_cli.add_parser(commands)

    commands.add_parser("version", help="print the version")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command's flags over them."""
    overrides: dict[str, Any] = {
        name: value
        for name in ("host", "port", "workers", "data_dir")
        if (value := getattr(args, name, None)) is not None
    }
    if "data_dir" in overrides:
        overrides["data_dir"] = Path(overrides["data_dir"])
    return Settings.from_env(**overrides)


def _check_listen(host: str, port: int) -> None:
    """Fail before starting anything when the address cannot be listened on (in use, not this
    machine's, not a host), with one line instead of uvicorn's start-up and shutdown logs."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _embedded(settings: Settings) -> EmbeddedServers | None:
    if settings.redis_url and settings.database_url:
        return None
    return EmbeddedServers(
        settings.data_dir, redis=not settings.redis_url, postgres=not settings.database_url
    )


def _with_servers(settings: Settings, stack: ExitStack) -> Settings:
    """Start what is not given by URL; return settings pointing at every server."""
    servers = _embedded(settings)
    if servers is None:
        return settings
    stack.enter_context(servers)
    return replace(
        settings,
        redis_url=servers.redis.url if servers.redis else settings.redis_url,
        database_url=servers.postgres.url if servers.postgres else settings.database_url,
    )


async def _check_and_migrate(settings: Settings) -> list[runner.Migration]:
    client = open_redis(settings.redis_url, settings.io_timeout_s, socket_connect_timeout=2)
    try:
        await asyncio.wait_for(client.ping(), settings.io_timeout_s)
    except Exception as exc:
        raise CliError(f"Redis at {settings.redis_url} does not answer: {exc}") from None
    finally:
        await client.aclose()
    return await _migrate(settings)


async def _migrate(settings: Settings) -> list[runner.Migration]:
    try:
        await db.ensure_schema(settings)
        conn = await db.connect(settings)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(f"PostgreSQL at {settings.database_url} does not answer: {exc}") from None
    try:
        return await runner.migrate(conn)
    finally:
        await conn.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(settings: Settings, demo: bool) -> None:
    import uvicorn

    from live.app import websocket_options

    # uvicorn re-raises the signal that stopped it once it has shut down; with this handler in
    # place that becomes SystemExit, so the embedded servers below are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _check_listen(settings.host, settings.port)
    with ExitStack() as stack:
        settings = _with_servers(settings, stack)
        applied = asyncio.run(_check_and_migrate(settings))
        if demo:
            from live import demo as demo_room

            asyncio.run(demo_room.seed(settings))
        os.environ["LIVE_REDIS_URL"] = settings.redis_url
        os.environ["LIVE_DATABASE_URL"] = settings.database_url
        os.environ["LIVE_JWT_SECRET"] = settings.resolved_jwt_secret()
        if settings.workers > 1:
            metrics_dir = (settings.data_dir / "metrics").resolve()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ[MULTIPROC_ENV] = str(metrics_dir)
        print(
            f"live {__version__}: http://{settings.host}:{settings.port} "
            f"(workers {settings.workers}, redis {settings.redis_url}, "
            f"postgres {settings.database_url}, {len(applied)} migrations applied)",
            flush=True,
        )
        if demo:
            shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
            for line in demo_room.links(settings, f"http://{shown}:{settings.port}"):
                print(line, flush=True)
        uvicorn.run(
            "live.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings.log_level),  # no token in any log
            timeout_graceful_shutdown=10,
            backlog=4096,  # a reconnect storm's handshakes wait, not retry a second later
            **websocket_options(settings),
            lifespan="on",
        )


def _migrate_command(settings: Settings) -> None:
    with ExitStack() as stack:
        settings = _with_servers(settings, stack)
        applied = asyncio.run(_migrate(settings))
        latest = runner.latest_version()
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
        print(f"schema at version {latest}: {names}")


def _token(settings: Settings, args: argparse.Namespace) -> None:
    try:
        token = auth.mint(
            settings.resolved_jwt_secret(),
            sub=args.sub,
            role=Role(args.role),
            room=args.room,
            ttl_s=args.ttl,
            name=args.name,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(token)


async def _reconcile(settings: Settings, sale_ids: list[int], auction_ids: list[int]) -> bool:
    """Every sale and auction when none is named; else the sales and auctions named."""
    from flash_sales.auctions import reconcile as auctions
    from flash_sales.group_deals import reconcile as group_deals
    from flash_sales.group_deals.pool import GroupPool
    from flash_sales.group_deals.store import GroupStore
    from flash_sales.reconcile import reconcile, render
    from flash_sales.store import SaleStore
    from inventory_lock import InventoryLock

    try:
        pool = await db.create_pool(settings)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(f"PostgreSQL at {settings.database_url} does not answer: {exc}") from None
    client = open_redis(settings.redis_url, settings.io_timeout_s)
    try:
        store = SaleStore(pool)
        lock = InventoryLock(client, settings.redis_prefix)
        everything = not sale_ids and not auction_ids
        kinds = await store.ids_by_kind(None if everything else sale_ids)
        reports = await reconcile(store, lock, kinds["flash"])
        group_reports = await group_deals.reconcile_deals(
            GroupStore(pool), GroupPool(client, settings.redis_prefix), kinds["group"]
        )
        if everything:
            auction_ids = await auctions.all_auction_ids(pool)
        auction_reports = await auctions.reconcile_auctions(pool, lock, auction_ids)
    except (OSError, aioredis.RedisError) as exc:
        raise CliError(f"Redis at {settings.redis_url} does not answer: {exc}") from None
    finally:
        await client.aclose()
        await pool.close()
    if reports or not (auction_reports or group_reports):
        print(render(reports))
    if group_reports:
        print(group_deals.render(group_reports))
    if auction_reports:
        print(auctions.render(auction_reports))
    verdicts = [r.ok for r in reports] + [r.ok for r in group_reports]
    return all(verdicts + [r.ok for r in auction_reports])


def _reconcile_command(settings: Settings, sale_ids: list[int], auction_ids: list[int]) -> None:
    with ExitStack() as stack:
        settings = _with_servers(settings, stack)
        ok = asyncio.run(_reconcile(settings, sale_ids, auction_ids))
    if not ok:
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "version":
            print(f"live {__version__}")
            return
        if args.command == "loadtest":
            from loadtest import cli as loadtest_cli

            sys.exit(loadtest_cli.run(args))
        settings = _settings(args)
        if args.command == "serve":
            _serve(settings, args.demo)
        elif args.command == "migrate":
            _migrate_command(settings)
        elif args.command == "reconcile":
            _reconcile_command(settings, args.sale, args.auction)
        elif args.command == "token":
            _token(settings, args)
        elif args.command == "webhooks":
            from live import cli_webhooks

            cli_webhooks.run(settings, args, _with_servers)
    except (CliError, SettingsError, EmbeddedError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # every error is one line, the unforeseen ones too
        _fail(f"{type(exc).__name__}: {exc}")


def _fail(message: str) -> NoReturn:
    text = " ".join(message.split()) or "failed"
    print(f"live: error: {text}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
