"""The lanes' rules as pure functions: what a frame keeps of a run of events, read from the
envelopes alone (lane, and the merge key of state events), whatever their types and data."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway import lanes

# (lane, key) as a publisher may set them, and envelopes the rules cannot read.
routes = st.one_of(
    st.tuples(st.just("critical"), st.none()),
    st.tuples(st.just("lossy"), st.none()),
    st.tuples(st.just("state"), st.sampled_from(["stock:1", "stock:2", "viewers"])),
    st.tuples(st.just("state"), st.none()),  # keyless: kept, never conflated
    st.tuples(st.sampled_from([None, "urgent"]), st.none()),  # no or unknown lane: critical
)
types = st.sampled_from(["stock", "pinned", "comment", "viewers", "sale_started", "anything"])


def _encode(seq: int, route: tuple[str | None, str | None], kind: str) -> bytes:
    lane, key = route
    event: dict[str, Any] = {"seq": seq, "epoch": "e", "type": kind}
    if lane is not None:
        event["lane"] = lane
    if key is not None:
        event["key"] = key
    event["data"] = {"sale_id": seq % 3, "n": seq}  # never read by the rules
    return json.dumps(event).encode()


runs = st.lists(st.tuples(routes, types), max_size=60).map(
    lambda items: [_encode(seq, route, kind) for seq, (route, kind) in enumerate(items, 1)]
)


def _expected(events: list[bytes], cap: int) -> tuple[list[int], int]:
    """The rules written out plainly: (seqs kept, lossy skipped)."""
    decoded = [json.loads(raw) for raw in events]
    kept, latest, lossy = [], {}, []
    for event in decoded:
        if event.get("lane") == "lossy":
            lossy.append(event["seq"])
        elif event.get("lane") == "state" and event.get("key"):
            latest[event["key"]] = event["seq"]
        else:
            kept.append(event["seq"])
    shown = lossy[len(lossy) - min(cap, len(lossy)) :]
    return sorted([*kept, *latest.values(), *shown]), len(lossy) - len(shown)


@given(events=runs, cap=st.integers(0, 5))
def test_a_frame_keeps_what_the_envelopes_say(events: list[bytes], cap: int) -> None:
    chosen = lanes.select(events, cap)
    seqs, skipped = _expected(events, cap)
    assert [e.seq for e in chosen.events] == seqs
    assert chosen.skipped == skipped
    assert all(e.raw == events[e.seq - 1] for e in chosen.events)  # the bytes as they came
    assert all(json.loads(e.raw).get("lane") == "lossy" for e in chosen.lossy)
    assert [e.seq for e in chosen.kept] == sorted(e.seq for e in chosen.kept)


@given(events=runs, cap=st.integers(0, 5), data=st.data())
def test_a_reader_at_any_position_gets_what_select_gives_for_the_rest(
    events: list[bytes], cap: int, data: st.DataObject
) -> None:
    """The hub's incremental buffer and the one-shot rules (a resume) agree: a reader that had
    everything up to `cursor` gets the frame of the events after it, also after the buffer
    forgot what every reader (the oldest at `oldest`) had."""
    cursor = data.draw(st.integers(0, len(events)))
    oldest = data.draw(st.integers(0, cursor))
    buffer = lanes.Lanes(cap)
    lossy_seen = 0
    for raw in events:
        event = json.loads(raw)
        buffer.add(event["seq"], raw, event)
        lossy_seen += event["seq"] <= cursor and event.get("lane") == "lossy"
    buffer.forget(oldest)
    got = buffer.since(cursor, lossy_seen)
    want = lanes.select(events[cursor:], cap)
    assert [e.seq for e in got.events] == [e.seq for e in want.events]
    assert got.skipped == want.skipped
