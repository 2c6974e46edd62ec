"""Every WebSocket message type (auth, comment, buy, confirm, cancel, bid, ping, and unknown types),
driven by hypothesis with arbitrary fields and values, non-JSON, binary and oversized frames,
over real sockets against the real app with real Redis and PostgreSQL.

Each message is answered by one reply or error frame (its `ref` echoed when it had a valid one),
never `internal_error` and never `unavailable` (Redis and PostgreSQL are up all along), and the
connection stays usable (a ping still answers) unless a documented close applies: 1009 after a
frame over the size limit, 4400 after more than the abuse limit of bad messages within a minute.
Connecting with odd tokens, rooms, `since` and `epoch` is refused with the documented close
codes, or welcomed."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from edge_kit import (
    BUYER,
    ROOM_A,
    ROOM_B,
    Socket,
    World,
    make_world,
    odd_tokens,
    token,
    ws_url,
)
from hypothesis import HealthCheck, event, example, given, settings
from serve_kit import Served
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ws_fuzz_kit import Case, Conn, Raw, cases

from gateway.protocol import CloseCode, ProtocolError, parse
from live.settings import Settings
from rooms.actors import Role
from rooms.text import storable

ABUSE_LIMIT = 20  # bad messages a minute before 4400 (docs/protocol.md, "Rate limits and abuse")
PROTOCOL_CODES = {"bad_json", "bad_message", "unknown_type", "invalid", "rate_limited"}


class Resolver:
    def __init__(self, world: World, hold_b: str) -> None:
        self.world = world
        self.settings = world.settings
        self.odd = odd_tokens(self.settings)
        self.hold_b = hold_b
        self.fresh = 0

    def token(self, symbol: str) -> str:
        kind, _, arg = symbol[1:].partition(":")
        if kind == "odd":
            return self.odd[int(arg)]
        sub, role, room = {
            "buyer": (BUYER, Role.VIEWER, ROOM_A),
            "other": ("viewer-2", Role.VIEWER, ROOM_A),
            "host": ("host-a", Role.HOST, ROOM_A),
            "moderator": ("mod-a", Role.MODERATOR, ROOM_A),
            "buyer-b": (BUYER, Role.VIEWER, ROOM_B),  # the same user, another room
        }[arg]
        return token(self.settings, sub, role, room)

    def value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not (isinstance(value, str) and value.startswith("$")):
            return value
        kind, _, arg = value[1:].partition(":")
        if kind in ("who", "odd"):
            return self.token(value)
        if kind == "sale":
            return self.world.sales[arg]
        if kind == "auction":
            return self.world.auctions[arg]
        if kind == "group_sale":
            return self.world.group_sales[arg]
        if kind == "group":
            return self.world.groups[arg]
        if kind == "hold":
            return self.hold_b if arg == "b" else self.world.holds[int(arg)]
        if kind == "fresh":
            self.fresh += 1
            return f"fresh-{self.fresh}"
        return value

    def frame(self, message: Raw | dict[str, Any]) -> str | bytes:
        if isinstance(message, Raw):
            return message.data
        return json.dumps(self.value(message))  # ASCII: lone surrogates travel as escapes

    def expected_close(self, conn: Conn) -> int | None:
        """The close code the connection is refused with, None when it is welcomed."""
        if conn.room not in (ROOM_A, ROOM_B):
            return CloseCode.ROOM_NOT_FOUND
        if conn.token is None or conn.token == "$odd:2":  # none, or empty: anonymous
            return None
        if conn.token.startswith("$who:"):  # valid tokens of room A
            return None if conn.room == ROOM_A else CloseCode.FORBIDDEN
        if conn.token == "$odd:15":  # a valid token of room B
            return None if conn.room == ROOM_B else CloseCode.FORBIDDEN
        if conn.token == "$odd:16":  # a valid token of a room that does not exist
            return CloseCode.FORBIDDEN
        return CloseCode.UNAUTHORIZED


def _protocol_error(frame: str | bytes) -> bool:
    """Whether the gateway's parser refuses this frame (a bad message, counted for abuse)."""
    try:
        parse(frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))
    except ProtocolError:
        return True
    return False


def _ref(message: Raw | dict[str, Any]) -> str | None:
    if isinstance(message, dict):
        ref = message.get("ref")
        if isinstance(ref, str) and len(ref) <= 64 and storable(ref):
            return ref
    return None


async def run_case(served: Served, resolver: Resolver, case: Case) -> None:
    conn = case.conn
    params = {}
    if conn.token is not None:
        params["token"] = resolver.token(conn.token)
    if conn.since is not None:
        params["since"] = conn.since
    if conn.epoch is not None:
        params["epoch"] = conn.epoch
    url = ws_url(served.url, conn.room, **params)
    expected_close = resolver.expected_close(conn)
    try:
        socket = await Socket.open(url, wait_welcome=False)
    except InvalidStatus as exc:  # a room id the router does not take (an encoded '/')
        assert expected_close == CloseCode.ROOM_NOT_FOUND, (conn, exc)
        return
    try:
        first = await socket.next_frame(("welcome", "error", "reply"))
        event(f"connect: {expected_close or 'welcome'}")
        if expected_close is not None:
            assert first is None, (conn, first)
            assert socket.close_code == expected_close, (conn, socket.close_code)
            return
        assert first is not None and first["type"] == "welcome", (conn, first, socket.close_code)
        assert first["resumed"] is False or conn.since is not None, (conn, first)
        await exchange(served, resolver, socket, case)
    finally:
        await socket.close()


async def exchange(served: Served, resolver: Resolver, socket: Socket, case: Case) -> None:
    """Send the case's messages one by one, each checked against its answer, then a ping."""
    size_limit = resolver.settings.max_message_bytes
    bad: list[float] = []  # when each bad message (a protocol error) was answered

    async def closed_for_abuse(context: object) -> bool:
        """More than the limit of bad messages within a minute: the connection is closed with
        4400 after the error frames."""
        if len([t for t in bad if time.monotonic() - t < 60]) <= ABUSE_LIMIT:
            return False
        assert await socket.next_frame(("reply", "error")) is None, context
        assert socket.close_code == CloseCode.ABUSE, context
        return True

    for message in [*case.messages, None]:
        ping = message is None
        frame = resolver.frame({"type": "ping", "ref": "alive"} if message is None else message)
        size = len(frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame)
        for _ in range(3):  # a ping refused by the rate limit is tried again a second later
            answer = await socket.ask(frame)
            context = (message, answer, socket.close_code, len(bad))
            if size > size_limit:
                assert answer is None, context
                assert socket.close_code == CloseCode.MESSAGE_TOO_BIG, context
                return
            assert answer is not None, context  # closed without a documented reason
            kind = message.get("type") if isinstance(message, dict) else "raw"
            kind = "last ping" if ping else kind
            # ASCII only: hypothesis cannot encode its statistics with a lone surrogate in them
            label = kind if isinstance(kind, str) and kind.isascii() else "?"
            event(f"{label}: {answer.get('error', 'reply')}")
            assert answer["type"] in ("reply", "error"), context
            rate_limited = answer["type"] == "error" and answer["error"] == "rate_limited"
            if answer["type"] == "error":
                assert answer["ok"] is False and isinstance(answer["detail"], str), context
                assert answer["error"] not in ("internal_error", "unavailable"), context
                throttled = rate_limited and "retry_after_s" not in answer  # not the policy's
                if throttled or _protocol_error(frame):
                    assert answer["error"] in PROTOCOL_CODES, context
                    bad.append(time.monotonic())
            else:
                assert answer["ok"] is True and isinstance(answer["data"], dict), context
            ref = "alive" if ping else _ref(message) if message is not None else None
            if ref is not None and not rate_limited:
                assert answer["ref"] == ref, context
            if await closed_for_abuse(context):
                return
            if not (ping and rate_limited):
                break
            await asyncio.sleep(1.1)
        if ping:
            assert answer is not None and answer["type"] == "reply", answer
            assert isinstance(answer["data"]["ts"], int), answer


@dataclass
class State:
    resolver: Resolver | None = None


STATE: dict[str, State] = {}


async def resolver_for(served: Served, settings: Settings) -> Resolver:
    state = STATE.setdefault(served.url, State())
    if state.resolver is None:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
            world = await make_world(client, settings)
            hold_b = await client.post(  # a hold of room B's sale, by another buyer of room B
                f"/api/sales/{world.sales[ROOM_B]}/reservations",
                json={"qty": 1},
                headers={
                    "authorization": f"Bearer {token(settings, 'b-1', Role.VIEWER, ROOM_B)}",
                    "idempotency-key": "b",
                },
            )
            assert hold_b.status_code == 201, hold_b.text
        state.resolver = Resolver(world, hold_b.json()["id"])
    return state.resolver


BUYER_IN_A = Conn(ROOM_A, "$who:buyer", None, None)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases)
@example(case=Case(BUYER_IN_A, [Raw("not json")] * 25))  # closed with 4400 past 20 bad ones
@example(case=Case(BUYER_IN_A, [{"type": "ping", "ref": str(n)} for n in range(30)]))
@example(case=Case(BUYER_IN_A, [{"type": "comment", "text": "x" * 5000}]))  # 1009
@example(case=Case(BUYER_IN_A, [Raw(b"\xff" * 5000)]))
@example(case=Case(BUYER_IN_A, [{"type": "buy", "sale_id": 2**62, "idempotency_key": "k"}]))
@example(case=Case(BUYER_IN_A, [{"type": "confirm", "reservation_id": "1.1", "payment_ref": "p"}]))
@example(
    case=Case(BUYER_IN_A, [{"type": "confirm", "reservation_id": "$hold:0", "payment_ref": "\x00"}])
)
@example(
    case=Case(
        BUYER_IN_A,
        [
            {"type": "bid", "auction_id": "$auction:room-a", "amount_cents": 2**63},
            {"type": "bid", "auction_id": 2**62, "amount_cents": 100, "idempotency_key": "k"},
            {
                "type": "bid",
                "auction_id": "$auction:room-a",
                "amount_cents": 500,
                "max_cents": 499,
                "idempotency_key": "k",
            },
        ],
    )
)
@example(case=Case(BUYER_IN_A, [{"type": "ping", "ref": "\ud800"}]))  # a ref not UTF-8
@example(case=Case(BUYER_IN_A, [{"type": "dance", "ref": "\udfff"}]))
@example(case=Case(Conn(ROOM_A, None, "12", "nope"), [{"type": "auth", "token": "$odd:15"}]))
@example(case=Case(Conn(ROOM_A, "$odd:15", None, None), []))
async def test_every_message_is_answered_and_the_connection_stays_usable(
    served: Served, settings: Settings, case: Case
) -> None:
    resolver = await resolver_for(served, settings)
    try:
        await run_case(served, resolver, case)
    except ConnectionClosed as exc:
        raise AssertionError(f"closed unexpectedly: {exc!r}") from exc
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
