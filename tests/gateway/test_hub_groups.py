"""The hub's staggered groups, as pure logic: whatever the order in which groups are flushed and
viewers come and go, every viewer gets every critical event exactly once and in order, the
latest value of every state key (the merge key each event's envelope names), and lossy events
within the cap with the rest counted.

The viewers here record what the hub offers them (the socket side is covered by the WebSocket
tests); events go in through `receive`, as pub/sub delivers them.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import hub as hub_module
from gateway.connection import Connection, Frame
from gateway.hub import HubConfig, RoomHub
from gateway.protocol import CloseCode

EPOCH = "e1"
CAP = 3


class RecordingViewer:
    """Stands where a Connection would: keeps every event of every frame offered to it."""

    closed = False
    is_synced = True

    def __init__(self, joined_at: int) -> None:
        self.joined_at = joined_at  # its snapshot's seq
        self.events: list[dict[str, Any]] = []
        self.skipped = 0
        self.close_code: int | None = None

    def offer(self, frame: Frame) -> bool:
        if frame.first_seq and frame.first_seq <= self.joined_at:
            frame = frame.after(self.joined_at)
        body = json.loads(frame.full)
        self.events.extend(body["events"])
        self.skipped += body["skipped"]
        return True

    def close(self, code: int, reason: str) -> None:
        self.close_code = code


async def _never_called(*args: object) -> Any:
    raise AssertionError("no log access expected")


def _hub(group_size: int = 500) -> RoomHub:
    config = HubConfig(lossy_per_tick=CAP, group_size=group_size)
    hub = RoomHub("r", config, _never_called, _never_called, _never_called)
    hub.epoch = EPOCH
    return hub


# The hub reads only the envelope: the types here are no event of any package's.
ROUTES = {
    "pin": ("critical", None),
    "stock": ("state", "k1"),
    "viewers": ("state", "k2"),
    "comment": ("lossy", None),
}


def _event(seq: int, kind: str) -> bytes:
    lane, key = ROUTES[kind]
    event = {"seq": seq, "epoch": EPOCH, "type": f"t_{kind}", "lane": lane, "data": {"n": seq}}
    return json.dumps({**event, "key": key} if key else event).encode()


step = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(sorted(ROUTES))),
    st.tuples(st.just("flush"), st.integers(0, 20)),
    st.tuples(st.just("join"), st.just(0)),
    st.tuples(st.just("leave"), st.integers(0, 20)),
    st.tuples(st.just("tick"), st.just(0)),  # the rotation, which also merges small groups
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, max_size=80), size=st.integers(1, 4))
def test_groups_deliver_every_critical_event_once_in_order(
    steps: list[tuple[str, Any]], size: int
) -> None:
    hub = _hub(size)
    viewers: list[RecordingViewer] = []
    left: list[tuple[RecordingViewer, int]] = []  # and the seq when it left
    seq = 0
    for action, arg in steps:
        if action == "event":
            seq += 1
            hub.receive(_event(seq, arg))
        elif action == "flush" and hub._groups:
            hub._flush_group(hub._groups[arg % len(hub._groups)])
        elif action == "join":
            viewer = RecordingViewer(seq)
            viewers.append(viewer)
            hub.add(cast(Connection, viewer))
        elif action == "tick":
            hub.tick_next_group()
        elif action == "leave" and viewers:
            viewer = viewers.pop(arg % len(viewers))
            hub.discard(cast(Connection, viewer))
            left.append((viewer, seq))
    hub.flush()
    assert all(0 < len(g.members) <= size for g in hub._groups)
    assert sum(len(g.members) for g in hub._groups) == len(viewers)
    pins = [s for s in range(1, seq + 1) if _kind_of(steps, s) == "pin"]
    states = [
        [s for s in range(1, seq + 1) if _kind_of(steps, s) == kind]
        for kind in ("stock", "viewers")
    ]
    comments = [s for s in range(1, seq + 1) if _kind_of(steps, s) == "comment"]
    for viewer in viewers:
        got = [e["seq"] for e in viewer.events]
        assert got == sorted(got) and len(got) == len(set(got)), "out of order or twice"
        assert all(s > viewer.joined_at for s in got)
        assert [s for s in got if s in pins] == [s for s in pins if s > viewer.joined_at]
        for keyed in states:  # per merge key
            later = [s for s in keyed if s > viewer.joined_at]
            if later:
                assert later[-1] in got, "the latest state value is never lost"
        later_comments = [s for s in comments if s > viewer.joined_at]
        shown = [s for s in got if s in comments]
        assert set(shown) <= set(later_comments)
    for viewer, left_at in left:  # nothing after leaving
        assert all(e["seq"] <= left_at for e in viewer.events)
    if hub._groups:
        assert hub._lanes.critical == [], "critical events every group was offered are forgotten"


def _kind_of(steps: list[tuple[str, Any]], seq: int) -> str:
    kinds = [arg for action, arg in steps if action == "event"]
    return str(kinds[seq - 1])


def test_lossy_events_beyond_the_cap_are_counted_per_group() -> None:
    hub = _hub(1)
    early, late = RecordingViewer(0), RecordingViewer(0)
    hub.add(cast(Connection, early))
    hub.add(cast(Connection, late))
    for seq in range(1, 6):
        hub.receive(_event(seq, "comment"))
    hub._flush_group(hub._groups[0])  # early: 5 came, the 3 most recent kept
    for seq in range(6, 8):
        hub.receive(_event(seq, "comment"))
    hub.flush()
    assert [e["seq"] for e in early.events] == [3, 4, 5, 6, 7] and early.skipped == 2
    assert [e["seq"] for e in late.events] == [5, 6, 7] and late.skipped == 4


def test_groups_left_small_by_a_crowd_leaving_are_merged() -> None:
    hub = _hub(2)
    viewers = [RecordingViewer(0) for _ in range(6)]
    for viewer in viewers:
        hub.add(cast(Connection, viewer))
    for viewer in viewers[::2]:
        hub.discard(cast(Connection, viewer))
    assert len(hub._groups) == 3
    for _ in range(6):
        hub.tick_next_group()
    assert sorted(len(g.members) for g in hub._groups) == [1, 2]
    hub.receive(_event(1, "pin"))
    hub.flush()
    assert all([e["seq"] for e in v.events] == [1] for v in viewers[1::2])


def test_groups_are_filled_before_a_new_one_starts() -> None:
    hub = _hub(2)
    viewers = [RecordingViewer(0) for _ in range(5)]
    for viewer in viewers:
        hub.add(cast(Connection, viewer))
    assert sorted(len(g.members) for g in hub._groups) == [1, 2, 2]
    hub.discard(cast(Connection, viewers[4]))
    assert sorted(len(g.members) for g in hub._groups) == [2, 2]
    hub.add(cast(Connection, viewers[4]))
    assert sorted(len(g.members) for g in hub._groups) == [1, 2, 2]


@pytest.mark.parametrize(
    "flush_s, groups, expected",
    [
        (0.0, 1, 0.05),  # quick writes: the configured tick
        (0.1, 1, 0.1 / hub_module.WRITE_SHARE),  # writes need a longer tick
        (0.02, 4, 0.08 / hub_module.WRITE_SHARE),  # four groups write four times as much
        (1.0, 1, 0.2),  # never past max_tick_s
    ],
)
def test_tick_stretches_for_slow_writes(flush_s: float, groups: int, expected: float) -> None:
    hub = _hub()
    hub._stretch(flush_s, groups)
    assert hub.tick_s == pytest.approx(expected)


def test_stretched_tick_relaxes_back() -> None:
    hub = _hub()
    hub._stretch(1.0, 1)
    assert hub.tick_s == pytest.approx(0.2)
    hub._stretch(0.001, 4)
    assert 0.19 < hub.tick_s < 0.2  # slowly
    for _ in range(200):
        hub._stretch(0.001, 4)
    assert hub.tick_s == pytest.approx(0.05)


def test_a_group_whose_frame_fails_resumes_and_does_not_hold_up_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = _hub(1)
    broken, fine = RecordingViewer(0), RecordingViewer(0)
    hub.add(cast(Connection, broken))
    hub.add(cast(Connection, fine))
    hub.receive(_event(1, "pin"))
    flush = hub._flush_group

    def failing_for_the_first(group: Any) -> None:
        if broken in group.members:
            raise RuntimeError("planted")
        flush(group)

    monkeypatch.setattr(hub, "_flush_group", failing_for_the_first)
    for _ in range(4):
        hub.tick_next_group()
    assert broken.events == [] and [e["seq"] for e in fine.events] == [1]
    assert broken.close_code == CloseCode.INTERNAL_ERROR and fine.close_code is None
    assert hub._lanes.critical == [] and hub._lanes.state == {}
