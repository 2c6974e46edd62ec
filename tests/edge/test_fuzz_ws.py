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
from dataclasses import dataclass, field
from typing import Any

import httpx
from edge_kit import (
    BUYER,
    ROOM_A,
    ROOM_B,
    Socket,
    World,
    hold_ids,
    long_digits,
    make_world,
    odd_tokens,
    token,
    weighted,
    ws_url,
)
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from serve_kit import Served
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.protocol import CloseCode, ProtocolError, parse
from live.settings import Settings
from rooms.actors import Role
from rooms.text import storable

TYPES = (
    "auth",
    "comment",
    "buy",
    "confirm",
    "cancel",
    "bid",
    "group_start",
    "group_join",
    "group_leave",
    "ping",
)
FIELD_NAMES = (
    "token",
    "text",
    "sale_id",
    "qty",
    "idempotency_key",
    "reservation_id",
    "payment_ref",
    "show_name",
    "auction_id",
    "amount_cents",
    "max_cents",
    "group_id",
    "ref",
    "type",
)
MUTABLE = FIELD_NAMES[:-2]  # all but `ref` and `type`
ABUSE_LIMIT = 20  # bad messages a minute before 4400 (docs/protocol.md, "Rate limits and abuse")
PROTOCOL_CODES = {"bad_json", "bad_message", "unknown_type", "invalid", "rate_limited"}


@dataclass(frozen=True)
class Raw:
    """A frame sent as it is (text or binary)."""

    data: str | bytes


@dataclass(frozen=True)
class Conn:
    room: str
    token: str | None  # a `$` symbol
    since: str | None
    epoch: str | None


@dataclass(frozen=True)
class Case:
    conn: Conn
    messages: list[Raw | dict[str, Any]] = field(default_factory=list)


# -- strategies -------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2**62, 2**62 + 1, 2**63, 2**64, 10**30]),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "a\x00", "\ud800", "x" * 129, "x" * 201]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
refs = st.one_of(
    st.none(), st.text(max_size=64), st.sampled_from([7, "", "r" * 65, ["r"], {"r": 1}])
)
VALID: dict[str, dict[str, Any]] = {
    "auth": {"token": "$who:buyer"},
    "comment": {"text": "hello"},
    "buy": {"sale_id": "$sale:room-a", "qty": 1, "idempotency_key": "$fresh"},
    "confirm": {"reservation_id": "$hold:0", "payment_ref": "pay", "show_name": False},
    "cancel": {"reservation_id": "$hold:1"},
    "bid": {"auction_id": "$auction:room-a", "amount_cents": 150, "idempotency_key": "$fresh"},
    "group_start": {"sale_id": "$group_sale:room-a", "idempotency_key": "$fresh"},
    "group_join": {"group_id": "$group:room-a"},
    "group_leave": {"group_id": "$group:room-a"},
    "ping": {},
}
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "token": st.sampled_from(
        ["$who:buyer", "$who:other", "$who:host", "$who:buyer-b"] + [f"$odd:{n}" for n in range(17)]
    ),
    "sale_id": st.sampled_from(
        ["$sale:room-a", "$sale:room-b", "$group_sale:room-a", "$group_sale:room-b"]
    )
    | long_digits.map(int)
    | st.sampled_from([2**62, 2**62 + 1, 2**63]),
    "reservation_id": st.sampled_from(["$hold:0", "$hold:1", "$hold:2", "$hold:b", "1.1"])
    | hold_ids,
    "idempotency_key": st.sampled_from(["$fresh", "k", "same"]),
    "auction_id": st.sampled_from(["$auction:room-a", "$auction:room-b"])
    | long_digits.map(int)
    | st.sampled_from([2**62, 2**63]),
    "group_id": st.sampled_from(["$group:room-a", "$group:room-b"])
    | long_digits.map(int)
    | st.sampled_from([0, -1, 2**62, 2**63]),
    "amount_cents": st.integers(-10, 10**6) | st.sampled_from([2**31, 2**63, 1.5, "100"]),
    "max_cents": st.none() | st.integers(-10, 10**6) | st.sampled_from([2**31, 2**63, 1e308]),
}


RAW_FRAMES: list[str | bytes] = [
    "not json",
    "",
    "null",
    "[]",
    '"ping"',
    "[" * 1000 + "]" * 1000,
    '{"type":' * 500 + "1" + "}" * 500,
    '{"type": "ping", "ref": NaN}',
    b"\xff\xfe",
    b'{"type": "ping"}',  # a binary frame with good JSON
    '{"type": "comment", "text": "x", "type": "ping"}',
    '{"type": "comment", "text": "' + "x" * 4100 + '"}',  # over the size limit: 1009
    b"\x00" * 4097,
]


@st.composite
def messages(draw: st.DrawFn) -> Raw | dict[str, Any]:
    kind = draw(st.sampled_from(["typed", "typed", "typed", "mutated", "any", "raw"]))
    if kind == "raw":
        return Raw(
            draw(
                st.one_of(
                    st.text(max_size=100),
                    st.binary(max_size=100),
                    st.sampled_from(RAW_FRAMES),
                )
            )
        )
    if kind == "any":
        return {
            name: draw(values)
            for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=5, unique=True))
        }
    kind_of = draw(
        weighted(
            (8, st.sampled_from(TYPES)),
            (1, st.sampled_from(["", "PING", "dance", "reply", "error", "welcome"])),
            (1, values),
        )
    )
    body: dict[str, Any] = dict(VALID.get(kind_of, {})) if isinstance(kind_of, str) else {}
    if kind == "mutated":
        for name in draw(st.lists(st.sampled_from(MUTABLE), max_size=3, unique=True)):
            if draw(st.booleans()):
                body.pop(name, None)
            else:
                body[name] = draw(PLAUSIBLE.get(name, values) | values)
    body["type"] = kind_of
    ref = draw(refs)
    if ref is not None:
        body["ref"] = ref
    return body


conns = st.builds(
    Conn,
    room=weighted(
        (8, st.just(ROOM_A)),
        (1, st.just(ROOM_B)),
        (1, st.sampled_from(["no-such-room", "%C2%B2", "a%0A", "x" * 65, "a%2Fb"])),
    ),
    token=weighted(
        (1, st.none()),
        (6, st.sampled_from(["$who:buyer", "$who:other", "$who:host", "$who:moderator"])),
        (1, st.integers(0, 16).map(lambda n: f"$odd:{n}")),
    ),
    since=st.none() | st.text(max_size=20) | st.integers().map(str),
    epoch=st.none() | st.text(max_size=30),
)
cases = st.builds(Case, conn=conns, messages=st.lists(messages(), min_size=1, max_size=24))


# -- running a case ---------------------------------------------------------------------------


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
