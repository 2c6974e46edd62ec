"""The load tester's WebSocket feed against a real service: live events are measured as fan-out
lag, a reconnect resumes from seq/epoch and what it replays is told apart from live fan-out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("websocket")

from loadtest import scenario, tokens
from loadtest.api import Api
from loadtest.feed import CONNECT, EVENT, REPLAY, RoomFeed
from loadtest.service import EmbeddedService
from loadtest.tally import Tally


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedService]:
    log = tmp_path_factory.mktemp("feed") / "service.log"
    with EmbeddedService(log) as running:
        yield running


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **request: Any) -> None:
        self.calls.append(request)

    def named(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["request_type"] == kind and c["name"] == name]


def _until(feed: RoomFeed, recorder: Recorder, kind: str, name: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(recorder.named(kind, name)) < count:
        assert time.monotonic() < deadline, f"no {kind} {name}: {recorder.calls}"
        feed.step()


def test_feed_measures_lag_and_resumes(service: EmbeddedService) -> None:
    room = scenario.new_room_id()
    host = Api(service.url, tokens.host_token(service.secret, room))
    scenario.create(host, room, stock=5, limit=1, hold_seconds=5, price_cents=100)
    recorder, tally = Recorder(), Tally()
    token = tokens.viewer_token(service.secret, room, "viewer-1")
    feed = RoomFeed(service.url, room, token, recorder, tally)

    assert feed.connect()
    assert recorder.named(CONNECT, "connect")[0]["exception"] is None
    host.post(f"/api/rooms/{room}/messages", {"text": "one"})
    _until(feed, recorder, EVENT, "host_message", 1)
    lag = recorder.named(EVENT, "host_message")[0]["response_time"]
    assert 0 <= lag < 5000
    seen = feed.seq

    feed.close()
    host.post(f"/api/rooms/{room}/messages", {"text": "missed while away"})
    assert feed.connect()
    assert recorder.named(CONNECT, "resume")[0]["exception"] is None
    assert tally.counts["resumes"] == 1
    _until(feed, recorder, REPLAY, "host_message", 1)
    assert feed.seq > seen
    host.post(f"/api/rooms/{room}/messages", {"text": "live again"})
    _until(feed, recorder, EVENT, "host_message", 2)
    assert tally.counts["events_replayed"] >= 1
    assert sum(tally.lag.values()) == tally.counts["events"]
    feed.close()
    host.close()


def test_refused_connection_is_a_failure(service: EmbeddedService) -> None:
    recorder, tally = Recorder(), Tally()
    token = tokens.viewer_token(service.secret, "no-such-room", "viewer-2")
    feed = RoomFeed(service.url, "no-such-room", token, recorder, tally)
    assert not feed.connect()
    failure = recorder.named(CONNECT, "connect")[0]["exception"]
    assert failure is not None and "4404" in str(failure)
    assert tally.counts["connect_errors"] == 1


def test_service_log_names_its_stores(service: EmbeddedService) -> None:
    assert service.redis_url.startswith("redis://")
    assert service.database_url.startswith("postgresql://")
    assert Path(service.data_dir).is_dir()
