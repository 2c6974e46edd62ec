"""The compact wire envelope (gateway/envelope.py): whatever events a room logs, a client that
expands an `events` frame gets back every event exactly as logged: the frame's epoch, the lane
and merge key its type implies where the event left them out, and everything else as it was."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.envelope import IMPLIED_KEYS, IMPLIED_LANES, expand, implied_key, wire_event
from gateway.hub import replay_frame
from gateway.protocol import events_frame
from rooms.events import MERGE_KEY, Lane, route

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
data = st.dictionaries(
    st.sampled_from(["sale_id", "id", "count", "text", "x"]), json_value, max_size=4
) | st.fixed_dictionaries({"sale_id": st.integers(1, 10**6)}, optional={"id": st.integers(1, 99)})
unknown_kinds = st.text(alphabet="abcxyz0_", max_size=8).map(lambda rest: f"t{rest}")
kinds = st.sampled_from(sorted(IMPLIED_LANES)) | unknown_kinds
merge_keys = st.text(alphabet="AZaz09_.:-", min_size=1, max_size=12)


@st.composite
def logged_event(draw: st.DrawFn, seq: int, epoch: str) -> dict[str, Any]:
    """An event as the log holds it: any envelope rooms.events.route accepts, its lane and key
    those the table implies or not."""
    kind = draw(kinds)
    body = draw(data)
    implied = IMPLIED_LANES.get(kind)
    lane = draw(st.sampled_from([implied, *Lane]) if implied else st.sampled_from(list(Lane)))
    key = ""
    if lane == Lane.STATE:
        guess = implied_key(kind, body) or ""
        implied_keys = [guess] if MERGE_KEY.fullmatch(guess) else []
        key = draw(st.sampled_from(implied_keys) | merge_keys if implied_keys else merge_keys)
    route(kind, lane, key)  # a well-formed envelope, as every publisher's is
    event: dict[str, Any] = {
        "seq": seq,
        "epoch": epoch,
        "ts": draw(st.integers(0, 2**41)),
        "type": kind,
        "lane": str(lane),
    }
    if key:
        event["key"] = key
    return {**event, "data": body}


@st.composite
def logged_events(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    epoch = str(draw(st.integers(10**15, 10**16 - 1)))
    count = draw(st.integers(0, 8))
    return epoch, [draw(logged_event(seq, epoch)) for seq in range(1, count + 1)]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(logged_events(), st.integers(0, 1000))
def test_a_frame_expands_to_the_events_as_logged(
    logged: tuple[str, list[dict[str, Any]]], skipped: int
) -> None:
    epoch, events = logged
    frame = json.loads(events_frame(epoch, [wire_event(e) for e in events], skipped))
    assert (frame["type"], frame["epoch"], frame["skipped"]) == ("events", epoch, skipped)
    assert expand(frame) == events
    for sent, event in zip(frame["events"], events, strict=True):
        # Only what is implied is left out: the epoch always, the lane and key when implied.
        assert "epoch" not in sent
        assert ("lane" in sent) == (IMPLIED_LANES.get(event["type"]) != event["lane"])
        implied = event["lane"] == "state" and event.get("key") == implied_key(
            event["type"], event["data"]
        )
        assert ("key" in sent) == ("key" in event and not implied)
        assert {k: v for k, v in sent.items() if k not in ("lane", "key")} == {
            k: v for k, v in event.items() if k not in ("epoch", "lane", "key")
        }


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(logged_events())
def test_a_replay_frame_expands_to_the_events_it_keeps(
    logged: tuple[str, list[dict[str, Any]]],
) -> None:
    epoch, events = logged
    frame = json.loads(replay_frame([json.dumps(e).encode() for e in events], lossy_cap=1000))
    assert frame["epoch"] == (epoch if events else "")
    kept = expand(frame)
    assert {e["seq"] for e in kept} <= {e["seq"] for e in events}
    assert kept == [e for e in events if e["seq"] in {k["seq"] for k in kept}]
    assert [e["seq"] for e in kept if e["lane"] != "state"] == [
        e["seq"] for e in events if e["lane"] != "state"
    ]


def test_the_types_of_the_protocol_leave_out_lane_and_key() -> None:
    """What the room's own publishers log (docs/protocol.md's table) goes out compact."""
    stock = {
        "seq": 7,
        "epoch": "1732540800123456",
        "ts": 1732540801057,
        "type": "stock",
        "lane": "state",
        "key": "stock:3",
        "data": {"sale_id": 3, "remaining": 37, "stock": 100},
    }
    assert json.loads(wire_event(stock)) == {
        "seq": 7,
        "ts": 1732540801057,
        "type": "stock",
        "data": {"sale_id": 3, "remaining": 37, "stock": 100},
    }
    assert set(IMPLIED_KEYS) == {k for k, lane in IMPLIED_LANES.items() if lane == "state"}
