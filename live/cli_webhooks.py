"""`live webhooks ...`: the operator's view of webhook delivery (list, deliveries), a replay of an
event (a dead letter, or one the merchant lost), and a signed test delivery to any URL."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import asyncpg

from flash_sales.webhooks import admin
from flash_sales.webhooks.dispatcher import client, post
from flash_sales.webhooks.endpoints import check_secrets, check_url, redact
from live import db
from live.cli_base import CliError
from live.settings import Settings
from rooms.errors import Invalid


def add_parser(commands: Any) -> None:
    webhooks = commands.add_parser("webhooks", help="webhook endpoints, deliveries, replays")
    what = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listing = what.add_parser("list", help="the endpoints and how their deliveries stand")
    shown = what.add_parser("deliveries", help="the latest deliveries, newest first")
    shown.add_argument("--failed", action="store_true", help="only those failing or dead")
    shown.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    replay = what.add_parser("replay", help="send an event again to its endpoints")
    replay.add_argument("event", metavar="EVENT_ID", help="evt_...")
    test = what.add_parser("test", help="send a signed webhook.test event to URL")
    test.add_argument("url", metavar="URL")
    test.add_argument("--secret", help="sign with this secret (default: LIVE_WEBHOOK_SECRET)")
    for parser in (listing, shown, replay):
        parser.add_argument("--data-dir", help="embedded servers' data (LIVE_DATA_DIR)")


def run(
    settings: Settings,
    args: argparse.Namespace,
    with_servers: Callable[[Settings, ExitStack], Settings],
) -> None:
    """`with_servers`: starts the embedded servers the settings name none of (live/cli.py)."""
    if args.webhooks_command == "test":
        asyncio.run(_test(settings, args.url, args.secret))
        return
    with ExitStack() as stack:
        settings = with_servers(settings, stack)
        asyncio.run(_with_database(settings, args))


async def _with_database(settings: Settings, args: argparse.Namespace) -> None:
    try:
        pool = await db.create_pool(settings)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(f"PostgreSQL at {settings.database_url} does not answer: {exc}") from None
    try:
        if args.webhooks_command == "list":
            print(_endpoints(await admin.endpoints(pool, settings.webhook_endpoints)))
        elif args.webhooks_command == "deliveries":
            if not 0 < args.limit <= 10_000:
                raise CliError("--limit must be from 1 to 10000")
            print(_deliveries(await admin.deliveries(pool, failed=args.failed, limit=args.limit)))
        else:
            urls = [endpoint.url for endpoint in settings.webhook_endpoints]
            count = await admin.replay(pool, args.event, urls)
            if count is None:
                raise CliError(f"no event {args.event!r} (or not fanned out yet: retry)")
            if not count:
                raise CliError(
                    f"{args.event} has no delivery to an endpoint that still exists "
                    "(not fanned out yet, or its endpoints are gone)"
                )
            print(f"{args.event}: {count} deliveries due again")
    except asyncpg.UndefinedTableError:
        raise CliError(
            f"schema {settings.database_schema!r} has no webhook tables: run `live migrate`"
        ) from None
    finally:
        await pool.close()


def _endpoints(found: list[admin.EndpointStatus]) -> str:
    if not found:
        return "no endpoints: set LIVE_WEBHOOK_URL, or POST /api/rooms/{room}/webhooks"
    lines = [f"{'id':>5}  {'room':<16} {'pending':>8} {'delivered':>10} {'dead':>6}  url"]
    for e in found:
        lines.append(
            f"{e.webhook_id or '-':>5}  {e.room or '(global)':<16} {e.pending:>8} "
            f"{e.delivered:>10} {e.dead:>6}  {redact(e.url)}"
        )
    return "\n".join(lines)


def _deliveries(found: list[admin.DeliveryRow]) -> str:
    if not found:
        return "no deliveries"
    lines = [
        f"{'event':<36} {'type':<18} {'sale':>6} {'seq':>5} {'tries':>5} {'state':<9} "
        f"{'last':<24} endpoint"
    ]
    for d in found:
        last = d.last_error or (f"HTTP {d.last_status}" if d.last_status else "")
        url = redact(d.url)
        endpoint = url if d.webhook_id == 0 else f"{url} (#{d.webhook_id})"
        lines.append(
            f"{d.event_id:<36} {d.event_type:<18} {d.sale_id:>6} {d.seq:>5} {d.attempts:>5} "
            f"{d.state:<9} {' '.join(last.split())[:24]:<24} {endpoint}"
        )
    return "\n".join(lines)


async def _test(settings: Settings, url: str, secret: str | None) -> None:
    try:
        check_url(url)
        secrets = check_secrets(secret if secret is not None else settings.webhook_secret)
    except Invalid as exc:
        source = "--secret" if secret is not None else "LIVE_WEBHOOK_SECRET"
        which = "URL" if "url" in exc.detail else source
        raise CliError(f"{which}: {exc.detail}") from None
    event, body = admin.test_body()
    started = time.monotonic()
    async with client(settings.webhook_timeout_s, connections=1) as http:
        status, error = await post(
            http,
            url,
            body,
            event=event,
            event_type="webhook.test",
            secrets=secrets,
            timeout_s=settings.webhook_timeout_s,
        )
    took_ms = (time.monotonic() - started) * 1000
    if error:
        raise CliError(f"{url}: {error} after {took_ms:.0f} ms")
    print(f"{url}: HTTP {status} in {took_ms:.0f} ms (event {event})")
