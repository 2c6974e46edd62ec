"""The dispatcher: loops in every process (no leader): one fans the outbox's events out into
deliveries, one claims queues that are due and works each in a task of its own, sending its
events with httpx, signed, one after another in seq order.

Everything is bounded: so many events fanned out per pass (and no more of a sale whose every
queue is backed up), so many queues worked at once (and so many of them to one endpoint, so
that a slow receiver takes a few of the slots and never all: the others' queues are claimed
and worked meanwhile), so many deliveries and so much time per queue, a timeout on every
request. A queue's lease outlasts its work by a margin, and every write about its deliveries
is conditional on the claim (see deliveries.py). An answer 2xx delivers; anything else (a
status, a timeout, a refused connection) is retried with exponential backoff and jitter and
holds back the queue's later events, until the policy's max age dead-letters it. Nothing here
runs inside an order's transaction: a receiver that is slow or down costs the dispatcher's
passes only, never a confirm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import httpx

from flash_sales import outbox
from flash_sales.webhooks import metrics
from flash_sales.webhooks.addresses import PublicTransport
from flash_sales.webhooks.deliveries import Delivery, DeliveryStore, Queue
from flash_sales.webhooks.endpoints import GLOBAL, Endpoint, RetryPolicy, redact
from flash_sales.webhooks.signature import HEADER, sign

log = logging.getLogger("live.webhooks")

FAN_OUT_ENTRIES = 50  # outbox entries fanned out per pass at most (an entry of orders: a batch)
FAN_OUT_EVENTS = 200  # and about this many events (each rendered here, in the confirms' loop)
BACKLOG = 200  # no more of a sale is fanned out while each of its queues has this many waiting
QUEUES_AT_ONCE = 32  # queues this process works at once, each in its own task
PER_ENDPOINT = 4  # of them to one endpoint (url) at most
DELIVERIES_PER_QUEUE = 100  # deliveries of one queue sent per claim, one after another
LEASE_MARGIN_S = 10.0  # a claim's lease outlasts its work by this (a pause, a slow database)
REGISTER_EVERY_S = 60.0  # this process's global endpoints are registered again
GAUGE_EVERY_S = 1.0
USER_AGENT = "live-webhooks/1"
ANSWER_BYTES = 65536  # of an answer's body read (and dropped); past that its connection closes


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        endpoints: Sequence[Endpoint],
        policy: RetryPolicy,
        *,
        timeout_s: float,
        interval_s: float,
        retention_s: float,
        allow_private: bool = False,
    ) -> None:
        """`endpoints`: the global ones (from the settings), the operator's own, sent to
        anywhere; rooms' come from the database and are sent to public addresses only unless
        `allow_private` (see addresses.py)."""
        self.store = store
        self.endpoints = {endpoint.url: endpoint for endpoint in endpoints}
        self.policy = policy
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.queue_budget_s = 4 * timeout_s  # then the queue is given back, to be claimed again
        self.lease_s = self.queue_budget_s + 2 * timeout_s + LEASE_MARGIN_S
        self.client = client(timeout_s)
        self.room_client = self.client if allow_private else client(timeout_s, public_only=True)
        self._working: dict[asyncio.Task[None], str] = {}  # each queue's task: its url
        self._gauge_at = 0.0
        self._registered_at: float | None = None

    def loops(self) -> list[tuple[str, float | None, Callable[[], Awaitable[None]]]]:
        """(name, seconds between runs, work), as SaleService.loops."""
        return [
            ("webhooks.fan_out", self.interval_s, self.fan_out),
            ("webhooks.dispatch", self.interval_s, self.dispatch),
            ("webhooks.upkeep", 60.0, self.upkeep),
        ]

    async def aclose(self) -> None:
        """Stop the queues' tasks (what they sent and did not mark is sent again: at least
        once), then the clients."""
        for task in self._working:
            task.cancel()
        await asyncio.gather(*self._working, return_exceptions=True)
        await self.client.aclose()
        await self.room_client.aclose()

    async def fan_out(self) -> None:
        """Register this process's global endpoints (now and then), then fan out a pass's
        worth of events to every registered one and the rooms'."""
        now = time.monotonic()
        if self.endpoints and (
            self._registered_at is None or now - self._registered_at >= REGISTER_EVERY_S
        ):
            await self.store.register_globals(list(self.endpoints))
            self._registered_at = now
        await self.store.fan_out(
            list(self.endpoints.values()),
            FAN_OUT_ENTRIES,
            FAN_OUT_EVENTS,
            BACKLOG,
            global_ttl_s=self.policy.max_age_s,
        )

    async def dispatch(self) -> None:
        """Claim due queues into the free slots, each worked in a task of its own."""
        free = QUEUES_AT_ONCE - len(self._working)
        if free > 0:
            working = Counter(self._working.values())
            busy = [url for url, n in working.items() if n >= PER_ENDPOINT]
            queues = await self.store.claim(free, self.lease_s, list(self.endpoints), busy)
            for queue in queues:
                if working[queue.url] >= PER_ENDPOINT:  # more than its share in one claim
                    await self.store.release(queue)
                    continue
                working[queue.url] += 1
                task = asyncio.create_task(self._work(queue), name=f"webhooks-{queue.sale_id}")
                self._working[task] = queue.url
                task.add_done_callback(self._done)
        now = time.monotonic()
        if now - self._gauge_at >= GAUGE_EVERY_S:
            self._gauge_at = now
            metrics.OLDEST_UNDELIVERED.set(await self.store.oldest_undelivered_s())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._working.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook queue failed: %r", task.exception())

    async def upkeep(self) -> None:
        """Dead-letter what nobody can deliver any more; forget what is old and done."""
        expired = await self.store.expire(self.policy.max_age_s + self.lease_s, self.lease_s)
        if expired:
            metrics.DEAD_LETTERS.inc(expired)
            log.warning("%d deliveries expired undelivered (their endpoint is gone)", expired)
        await self.store.forget(self.retention_s, 10_000)

    async def _work(self, queue: Queue) -> None:
        """Send the queue's due replays, then its due events in seq order until one fails or
        the budget is spent; then mark what was delivered (one statement: should this process
        die first, those events are sent again, which at least once allows) and give the queue
        back. A failure of the database leaves the lease to run out."""
        delivered: list[tuple[int, int]] = []  # (delivery, status)
        try:
            secrets = self._secrets(queue)
            if secrets is None:
                await self.store.drop_queue(queue, "endpoint removed")
                return
            started = time.monotonic()
            for delivery in await self.store.pending(queue, DELIVERIES_PER_QUEUE):
                if time.monotonic() - started > self.queue_budget_s:
                    break
                if delivery.replay:  # out of order: its failure holds back nothing
                    if delivery.due:
                        await self._deliver(queue, delivery, secrets, delivered)
                    continue
                if not delivery.due or not await self._deliver(queue, delivery, secrets, delivered):
                    break
        except _ClaimLost:
            log.warning("webhook queue of sale %s: its lease ran out meanwhile", queue.sale_id)
        finally:
            await self.store.delivered(queue, delivered)
            await self.store.release(queue)

    def _secrets(self, queue: Queue) -> tuple[str, ...] | None:
        if queue.webhook_id == GLOBAL:
            endpoint = self.endpoints.get(queue.url)
            return None if endpoint is None else endpoint.secrets
        return queue.secrets

    async def _deliver(
        self,
        queue: Queue,
        delivery: Delivery,
        secrets: tuple[str, ...],
        delivered: list[tuple[int, int]],
    ) -> bool:
        """One attempt; whether the queue may go on (delivered: added to `delivered`, or
        dead-lettered). _ClaimLost when the queue is no longer this dispatcher's. A retry is
        due at the delivery's max age at the latest: its last attempt is made then, and only
        then is it dead-lettered."""
        status, error = await self.send(queue, delivery, secrets)
        if status is not None and 200 <= status < 300:
            delivered.append((delivery.id, status))
            metrics.DELIVERED.inc()
            return True
        metrics.FAILED.inc()
        left_s = self.policy.max_age_s - delivery.age_s
        delay_s = self.policy.delay_s(delivery.attempts + 1)
        retry_in_s = None if left_s <= 0 else min(delay_s, left_s)
        if not await self.store.failed(queue, delivery, status, error, retry_in_s):
            raise _ClaimLost
        if retry_in_s is not None:
            return False
        metrics.DEAD_LETTERS.inc()
        log.warning(
            "webhook %s of sale %s to %s dead-lettered after %d attempts: %s",
            delivery.event_type,
            queue.sale_id,
            redact(queue.url),
            delivery.attempts + 1,
            error,
        )
        return True

    async def send(
        self, queue: Queue, delivery: Delivery, secrets: Sequence[str]
    ) -> tuple[int | None, str]:
        """One attempt: a room's endpoint through the client that connects to public
        addresses only (unless private ones are allowed), a global one through the other."""
        return await post(
            self.client if queue.webhook_id == GLOBAL else self.room_client,
            queue.url,
            delivery.body,
            event=outbox.event_id(delivery.event_id),
            event_type=delivery.event_type,
            secrets=secrets,
            timeout_s=self.timeout_s,
        )


class _ClaimLost(Exception):
    """The queue's claim was taken over (its lease ran out): this dispatcher stops on it."""


def client(
    timeout_s: float, connections: int = QUEUES_AT_ONCE * 2, *, public_only: bool = False
) -> httpx.AsyncClient:
    """The HTTP client of deliveries: a timeout on every step, no redirects followed;
    `public_only`: connecting to public addresses only, and through no proxy of the
    environment (whose address the check would refuse, and which would bypass it)."""
    limits = httpx.Limits(max_connections=connections)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        limits=limits,
        headers={"user-agent": USER_AGENT, "content-type": "application/json"},
        transport=PublicTransport(limits, timeout_s) if public_only else None,
        trust_env=not public_only,
    )


async def post(
    http: httpx.AsyncClient,
    url: str,
    body: str,
    *,
    event: str,
    event_type: str,
    secrets: Sequence[str],
    timeout_s: float,
) -> tuple[int | None, str]:
    """POST one event, signed; (status, "") or (status or None, what went wrong). The answer's
    body is read and dropped, so that its connection serves the next delivery (a connection per
    delivery would cost most of its CPU), up to ANSWER_BYTES; the whole request is bounded by
    `timeout_s`."""
    content = body.encode()
    headers = {
        HEADER: sign(secrets, content),
        "live-event-id": event,
        "live-event-type": event_type,
    }
    try:
        async with asyncio.timeout(timeout_s):
            async with http.stream("POST", url, content=content, headers=headers) as answer:
                status, size = answer.status_code, 0
                async for chunk in answer.aiter_raw():
                    size += len(chunk)
                    if size > ANSWER_BYTES:  # not worth its connection: closed unread
                        break
    except TimeoutError:
        return None, f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:  # the URL's credentials and query stay out of the record
        text = str(exc).replace(url, redact(url))
        return None, f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return status, "" if 200 <= status < 300 else f"HTTP {status}"
