"""The raw-socket viewer (loadtest/rawfeed.py) reads what the server writes the same as the
frame decoder (loadtest/feed.py): frames built by the server's own encoder (gateway/envelope.py,
gateway/protocol.py), framed as WebSocket server frames (some fragmented, pings between), cut
into arbitrary pieces. A probe ends with the same state, counts and measurements as the decoder
fed the frames whole; a viewer that is no probe ends, once caught up, at the same place."""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import envelope, lanes
from gateway.protocol import events_frame, welcome_frame
from loadtest import wsframes
from loadtest.feed import FeedState
from loadtest.rawfeed import RawFeed
from loadtest.tally import Tally

NOW_MS = 1_800_000_000_000.0
TYPES = ["host_message", "pinned", "sale_started", "sold_out", "stock", "viewers", "comment"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **request: Any) -> None:
        self.calls.append(request)


def _event(seq: int, epoch: str, kind: str, lag_ms: int, odd_lane: bool) -> dict[str, Any]:
    """An event in the log's full envelope, as a publisher makes it."""
    data: dict[str, Any] = {"text": 'héllo "quoted" {"seq":1}'}
    lane = envelope.IMPLIED_LANES[kind]
    if kind == "stock":
        data = {"sale_id": 3, "remaining": seq, "stock": 100}
    elif kind == "viewers":
        data = {"viewers": seq}
    if odd_lane:  # a publisher's other choice: the wire keeps lane (and key)
        lane = lanes.CRITICAL if lane != lanes.CRITICAL else lanes.LOSSY
    event: dict[str, Any] = {
        "seq": seq,
        "epoch": epoch,
        "ts": int(NOW_MS) - lag_ms,
        "type": kind,
        "lane": lane,
    }
    if lane == lanes.STATE:
        event["key"] = envelope.implied_key(kind, data) or f"k{seq}"
    event["data"] = data
    return event


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[str], list[int]]:
    """The frames of one connection (a welcome, then events frames; an epoch change may come)
    and the cut points of its bytes."""
    epoch, epochs = "1732540800123456", 0
    seq = draw(st.integers(0, 1000))
    frames = [welcome_frame(False, epoch, seq, "viewer-1", {"exp": None, "expires_in_s": None})]
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
            epochs += 1
            epoch, seq = f"17325409990000{epochs:02d}", 0  # the log started anew
        events = []
        for _ in range(draw(st.integers(1, 5))):
            seq += draw(st.integers(1, 3))  # gaps: lossy sampled away, state conflated
            kind = draw(st.sampled_from(TYPES))
            lag = draw(st.integers(0, 3000))
            events.append(_event(seq, epoch, kind, lag, draw(st.booleans())))
        wire = [envelope.wire_event(event) for event in events]
        frames.append(events_frame(epoch, wire, draw(st.integers(0, 40))))
    return frames, draw(st.lists(st.integers(1, 400), max_size=30))


def _server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    head = (0x80 if final else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", head, len(payload)) + payload
    if len(payload) < 1 << 16:
        return struct.pack("!BBH", head, 126, len(payload)) + payload
    return struct.pack("!BBQ", head, 127, len(payload)) + payload


def _wire(frames: list[str], split: int) -> bytes:
    """The frames as a server writes them; every other one fragmented at `split`, a ping after
    each."""
    out = b""
    for index, text in enumerate(frames):
        payload = text.encode()
        cut = split % max(len(payload), 1)
        if index % 2 and 0 < cut < len(payload):
            out += _server_frame(wsframes.TEXT, payload[:cut], final=False)
            out += _server_frame(wsframes.PING, b"p")
            out += _server_frame(wsframes.CONTINUATION, payload[cut:])
        else:
            out += _server_frame(wsframes.TEXT, payload)
        out += _server_frame(wsframes.PING, b"")
    return out


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    pieces, at = [], 0
    for size in cuts:
        pieces.append(data[at : at + size])
        at += size
    return [*pieces, data[at:]]


def _raw(probe: bool, frames: list[str], cuts: list[int]) -> tuple[RawFeed, Recorder, Tally]:
    recorder, tally, seen = Recorder(), Tally(), list[dict[str, Any]]()
    feed = RawFeed(
        "http://127.0.0.1:1", "room", "token", recorder, tally, probe=probe, on_event=seen.append
    )
    feed.state.welcome(json.loads(frames[0]))  # connect() reads the welcome itself
    for piece in _pieces(_wire(frames[1:], sum(cuts)), cuts):
        feed.receive(piece, NOW_MS)
    return feed, recorder, tally


@settings(max_examples=150, deadline=None)
@given(streams())
def test_a_probe_reads_what_the_decoder_reads(stream: tuple[list[str], list[int]]) -> None:
    frames, cuts = stream
    recorder, tally, seen = Recorder(), Tally(), list[dict[str, Any]]()
    decoder = FeedState(recorder, tally, on_event=seen.append)
    decoder.welcome(json.loads(frames[0]))
    for text in frames[1:]:
        decoder.frame(json.loads(text), NOW_MS)

    feed, raw_recorder, raw_tally = _raw(True, frames, cuts)
    assert (feed.state.epoch, feed.state.seq) == (decoder.epoch, decoder.seq)
    assert raw_recorder.calls == recorder.calls
    assert raw_tally.counts.pop("frames") == len(frames) - 1
    assert raw_tally.counts == tally.counts
    assert raw_tally.lag == tally.lag
    assert raw_tally.counts["seq_regressions"] == 0
    # Each frame measured once, by its oldest event, against the server's own `ts`.
    expanded = [envelope.expand(json.loads(text)) for text in frames[1:]]
    assert [call["name"] for call in recorder.calls] == [events[0]["type"] for events in expanded]
    assert [call["response_time"] for call in recorder.calls] == [
        NOW_MS - events[0]["ts"] for events in expanded
    ]


@settings(max_examples=150, deadline=None)
@given(streams())
def test_a_viewer_that_is_no_probe_resumes_where_the_decoder_is(
    stream: tuple[list[str], list[int]],
) -> None:
    frames, cuts = stream
    decoder = FeedState(Recorder(), Tally())
    decoder.welcome(json.loads(frames[0]))
    for text in frames[1:]:
        decoder.frame(json.loads(text), NOW_MS)

    feed, recorder, tally = _raw(False, frames, cuts)
    assert recorder.calls == []  # nothing measured, nothing decoded...
    assert tally.counts["frames"] == len(frames) - 1
    feed._catch_up()  # ...until it must resume
    assert (feed.state.epoch, feed.state.seq) == (decoder.epoch, decoder.seq)


def test_a_wanted_frame_is_decoded_by_a_viewer_that_is_no_probe() -> None:
    seen: list[dict[str, Any]] = []
    epoch = "1"
    sold_out = envelope.wire_event(_event(5, epoch, "sold_out", 10, False))
    feed = RawFeed(
        "http://127.0.0.1:1",
        "room",
        "token",
        Recorder(),
        Tally(),
        probe=False,
        on_event=seen.append,
        wants=lambda frame: b'"type":"sold_out"' in frame,
    )
    feed.receive(_server_frame(wsframes.TEXT, events_frame(epoch, [sold_out]).encode()), NOW_MS)
    assert [event["type"] for event in seen] == ["sold_out"]
