"""The bodies the HTTP fuzz draws (http_fuzz_kit.py): a body good for every route at once, the
same with fields dropped or given odd values (JSON of any shape, odd moments, room settings and
product ids), any JSON, raw bytes, or none. Ids of the world the test made stand as symbols
(`$...`), resolved per request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_kit import weighted
from hypothesis import strategies as st
from serve_kit import TEST_SECRET

from gateway.share_codes import mint_share

FIELDS = (  # every field a body of the HTTP API has (README), and the room settings
    "title",
    "settings",
    "sku",
    "price_cents",
    "image_url",
    "product_id",
    "text",
    "seconds",
    "stock",
    "limit_per_buyer",
    "hold_seconds",
    "starts_at",
    "ends_at",
    "qty",
    "payment_ref",
    "show_name",
    "delta",
    "url",
    "secret",
    "start_cents",
    "increment_cents",
    "increments",
    "duration_s",
    "snipe_window_s",
    "max_extensions",
    "reserve_cents",
    "amount_cents",
    "max_cents",
    "kind",
    "group_price_cents",
    "group_size",
    "group_window_s",
    "share",
    "percent",
)
VALID_BODY: dict[str, Any] = {  # good for every route at once: each reads only its own fields
    "title": "A title",
    "settings": {"blocked_words": ["spam"], "allow_anonymous": True},
    "sku": "sku-1",
    "price_cents": 1000,
    "image_url": "https://example.com/i.png",
    "product_id": "$product:a",
    "text": "hello",
    "seconds": 5,
    "stock": 10,
    "limit_per_buyer": 2,
    "hold_seconds": 60,
    "qty": 1,
    "payment_ref": "pay-1",
    "show_name": True,
    "delta": 1,
    "url": "http://hooks.invalid/hook",  # never resolves (RFC 2606): deliveries fail, retry
    "secret": "whsec-0123456789abcdef",
    "start_cents": 100,
    "increment_cents": 10,
    "duration_s": 600,
    "snipe_window_s": 10,
    "max_extensions": 3,
    "amount_cents": 150,
    "max_cents": 500,
    "share": mint_share(TEST_SECRET, "room-a", "buyer-1"),  # a share code of room A
    "percent": 10,
    "group_price_cents": 800,
    "group_size": 3,
    "group_window_s": 600,
}


@dataclass(frozen=True)
class Raw:
    """Body bytes sent as they are."""

    data: bytes


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 2**62, 2**63, 2**64, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "1", "true", "x" * 300]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
moments = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes(max_value=datetime(1, 1, 2), timezones=st.timezones()).map(str),  # the edges
    st.datetimes(min_value=datetime(9999, 12, 30), timezones=st.timezones()).map(str),
    st.datetimes().map(lambda d: d.isoformat()),  # no zone
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",  # in UTC: before year 1
            "9999-12-31T23:59:59-14:00",  # in UTC: after year 9999
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59+00:00",
            253402300799999,  # 9999-12-31 in epoch ms
            -62135596800000,  # 0001-01-01 in epoch ms
            "2030-01-01",
            "tomorrow",
        ]
    ),
)
odd_words = st.sampled_from(["\x00", "a\x00", "\ud800", "\udfff", " ", "", "w" * 51, "Ünïcödé"])
room_settings = weighted(
    (
        3,
        st.fixed_dictionaries(
            {},
            optional={
                "blocked_words": st.lists(st.text(max_size=60) | odd_words, max_size=5),
                "allow_anonymous": st.booleans(),
            },
        ),
    ),
    (1, st.dictionaries(st.sampled_from(["blocked_words", "allow_anonymous", "x"]), json_values)),
)
odd_field_value: dict[str, st.SearchStrategy[Any]] = {
    "starts_at": moments,
    "ends_at": moments,
    "settings": room_settings,
    "product_id": st.sampled_from(["$product:a", "$product:b"]) | json_values,
}


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "none", "json", "raw"]))
    if kind == "none":
        return None
    if kind == "json":
        return draw(json_values)
    if kind == "raw":
        return Raw(
            draw(
                st.one_of(
                    st.binary(max_size=200),
                    st.sampled_from(
                        [
                            b"\xff\xfe{}",
                            b'{"title": "\xff"}',
                            b"{",
                            b"not json",
                            b"[" * 5000 + b"]" * 5000,
                            b'{"a":' * 3000 + b"1" + b"}" * 3000,
                            b'{"title": "x"}' + b" " * 20_000,  # over the body limit
                            b'{"title": "' + b"x" * 20_000 + b'"}',
                            b'{"qty": NaN, "stock": Infinity}',
                            b'{"qty": 1, "qty": "2"}',
                            b"\xef\xbb\xbf{}",  # a byte order mark
                            b"null",
                            b"   ",
                        ]
                    ),
                )
            )
        )
    body = dict(VALID_BODY)
    if kind == "mutated":
        for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
            if draw(st.booleans()):
                body.pop(name, None)
            else:
                body[name] = draw(odd_field_value.get(name, json_values))
    return body
