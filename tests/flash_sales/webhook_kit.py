"""What the webhook tests share: a real receiver (a small Starlette app under uvicorn on a loopback
port, in the test's event loop) that answers as it is told, can be stopped and started again on
its port, and records every request in order; the settings of a service that delivers to it;
and reads of the outbox and the deliveries in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from live_env import REPO, live_env
from sale_kit import db
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flash_sales.outbox import event_id, order_event
from flash_sales.webhooks.signature import verify
from gateway.logs import uvicorn_log_config
from live.embedded import free_port
from live.settings import Settings

SECRET = "whsec-test-0123456789abcdef"
Mode = Literal["ok", "fail", "hang", "flaky"]


@dataclass
class Got:
    """One request as the receiver got it, and what it answered (None while it holds it)."""

    body: bytes
    headers: dict[str, str]
    status: int | None

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event

    def signed_by(self, *secrets: str) -> bool:
        return verify(self.headers.get("live-signature", ""), self.body, secrets)


class Receiver:
    """Answers 200 ("ok"), 500 ("fail"), 500 to every third request and 200 to the others
    ("flaky"), or holds each request until its mode changes ("hang", then 503: a sender that
    waited that long has given up anyway); 500 to the events in `rejected`, whatever the
    mode."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode: Mode = "ok"
        self.got: list[Got] = []
        self.rejected: set[str] = set()  # event ids
        self.holding = 0
        self._changed = asyncio.Condition()
        self._released = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        got = Got(await request.body(), dict(request.headers), None)
        self.got.append(got)
        if got.event["id"] in self.rejected:
            got.status = 500
        elif self.mode == "hang":
            self.holding += 1
            await self._notify()
            try:
                await self._released.wait()
            finally:
                self.holding -= 1
            got.status = 503
        elif self.mode == "flaky":
            got.status = 500 if len(self.got) % 3 == 0 else 200
        else:
            got.status = 200 if self.mode == "ok" else 500
        await self._notify()
        return Response(status_code=got.status)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "hang":
            self._released = asyncio.Event()
        else:
            self._released.set()
        await self._notify()

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            log_config=uvicorn_log_config("warning"),
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(15):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)  # polling, bounded by the timeout

    async def stop(self) -> None:
        """Down: connections are refused until `start` again."""
        self._released.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 15)
        self._server = self._task = None

    async def until(self, check: Callable[[], bool], what: str, within: float = 60.0) -> None:
        """Until `check()` holds (looked at after every request), at most `within` seconds."""
        try:
            async with asyncio.timeout(within):
                async with self._changed:
                    await self._changed.wait_for(check)
        except TimeoutError:
            raise AssertionError(
                f"{what}: not within {within:.0f}s ({len(self.got)} got)"
            ) from None

    def ids(self, *, acked: bool = False) -> set[str]:
        return {
            g.event["id"]
            for g in self.got
            if not acked or (g.status is not None and 200 <= g.status < 300)
        }


@contextlib.asynccontextmanager
async def receiving(mode: Mode = "ok", *, up: bool = True) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    receiver.mode = mode
    if up:
        await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def delivering(settings: Settings, *urls: str, **changes: Any) -> Settings:
    """The settings of a service that delivers every event to `urls`, signed with SECRET, with
    quick timeouts and retries (a test's minutes are few)."""
    quick: dict[str, Any] = {
        "webhook_url": ",".join(urls),
        "webhook_secret": SECRET,
        "webhook_timeout_s": 1.0,
        "webhook_retry_s": 0.05,
        "webhook_retry_max_s": 0.4,
        "webhook_poll_ms": 50,
        "webhook_allow_private": True,  # the rooms' endpoints of the tests are on loopback
    }
    return dataclasses.replace(settings, **{**quick, **changes})


async def live_command(settings: Settings, *args: str) -> tuple[int, str, str]:
    """`live <args>` as a subprocess on the test's servers: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "live.cli",
        *args,
        env=live_env(settings),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def outbox(settings: Settings) -> list[dict[str, Any]]:
    """Every event of the outbox, by sale and number: id, sale, seq, type, fanned out (an
    entry of orders is one event per order, see flash_sales/outbox.py)."""
    conn = await db(settings)
    try:
        rows = await conn.fetch(
            "SELECT id, sale_id, seq, type, order_ids, fanned_at IS NOT NULL AS fanned "
            "FROM outbox ORDER BY sale_id, seq"
        )
    finally:
        await conn.close()
    events: list[dict[str, Any]] = []
    for row in rows:
        common = {"sale_id": row["sale_id"], "type": row["type"], "fanned": row["fanned"]}
        if row["order_ids"] is None:
            events.append({"id": event_id(row["id"]), "seq": row["seq"], **common})
            continue
        for n, order in enumerate(row["order_ids"]):
            event = event_id(order_event(row["id"], order))
            events.append({"id": event, "seq": row["seq"] + n, "order_id": order, **common})
    return events


async def deliveries(settings: Settings) -> list[dict[str, Any]]:
    conn = await db(settings)
    try:
        rows = await conn.fetch(
            "SELECT 'evt_' || replace(event_id::text, '-', '') AS event, sale_id, seq, "
            "webhook_id, url, attempts, last_status, last_error, delivered_at IS NOT NULL "
            "AS delivered, dead FROM deliveries ORDER BY sale_id, seq, id"
        )
        return [dict(row) for row in rows]
    finally:
        await conn.close()


async def until_stored(
    settings: Settings,
    check: Callable[[list[dict[str, Any]], list[dict[str, Any]]], bool],
    what: str,
    within: float = 60.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Until `check(outbox, deliveries)` holds, read every 0.1 s for at most `within` s."""
    try:
        async with asyncio.timeout(within):
            while True:
                found = await outbox(settings), await deliveries(settings)
                if check(*found):
                    return found
                await asyncio.sleep(0.1)  # polling a condition in PostgreSQL, bounded
    except TimeoutError:
        raise AssertionError(f"{what}: not within {within:.0f}s") from None


def all_delivered(events: list[dict[str, Any]], sent: list[dict[str, Any]]) -> bool:
    return bool(events) and all(e["fanned"] for e in events) and all(d["delivered"] for d in sent)


def in_order(got: list[Got]) -> list[str]:
    """Problems with the order of `got`: a sale's event sent before an earlier event of the
    sale was acknowledged (a 2xx), or a sale's first arrivals not numbered 1, 2, 3, ..."""
    problems: list[str] = []
    acked: dict[int, set[int]] = {}
    first: dict[int, list[int]] = {}
    seen: set[str] = set()
    for g in got:
        data = g.event["data"]
        sale, seq = data["sale_id"], data["sequence"]
        done = acked.setdefault(sale, set())
        missing = set(range(1, seq)) - done
        if missing:
            problems.append(f"sale {sale}: event {seq} sent before {sorted(missing)[:5]} got a 2xx")
        if g.event["id"] not in seen:
            seen.add(g.event["id"])
            first.setdefault(sale, []).append(seq)
        if g.status is not None and 200 <= g.status < 300:
            done.add(seq)
    for sale, seqs in first.items():
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"sale {sale}: first arrivals {seqs[:20]}")
    return problems
