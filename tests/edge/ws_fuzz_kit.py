"""The connections and messages the WebSocket fuzz draws (tests/edge/test_fuzz_ws.py): every
message type with valid, mutated or arbitrary fields and refs, raw text and binary frames, and
connections with odd rooms, tokens, `since` and `epoch`. Values that depend on the world the
test made (tokens, ids of sales, holds, auctions and groups) are drawn as symbols (`$...`) and
resolved per message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_kit import ROOM_A, ROOM_B, hold_ids, long_digits, weighted
from hypothesis import strategies as st

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
