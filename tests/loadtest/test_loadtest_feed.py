"""The load tester's raw-socket feed (loadtest/rawfeed.py) against a real service: live frames are
measured as fan-out lag, a reconnect resumes from seq/epoch and what it replays is told apart
from live fan-out; a viewer that is no probe resumes from the frame it never decoded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

gevent = pytest.importorskip("gevent")

from loadtest import scenario, tokens  # noqa: E402
from loadtest.api import Api  # noqa: E402
from loadtest.feed import CONNECT, EVENT, REPLAY  # noqa: E402
from loadtest.rawfeed import RawFeed  # noqa: E402
from loadtest.service import EmbeddedService  # noqa: E402
from loadtest.tally import Tally  # noqa: E402


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


def _until(check: Any, what: str) -> None:
    """Let gevent's loop read the sockets until `check()` holds."""
    deadline = time.monotonic() + 15
    while not check():
        assert time.monotonic() < deadline, what
        gevent.sleep(0.02)


def test_feed_measures_lag_and_resumes(service: EmbeddedService) -> None:
    room = scenario.new_room_id()
    host = Api(service.url, tokens.host_token(service.secret, room))
    scenario.create(host, room, stock=5, limit=1, hold_seconds=5, price_cents=100)
    recorder, tally = Recorder(), Tally()
    token = tokens.viewer_token(service.secret, room, "viewer-1")
    feed = RawFeed(service.url, room, token, recorder, tally, probe=True)

    assert feed.connect()
    assert recorder.named(CONNECT, "connect")[0]["exception"] is None
    host.post(f"/api/rooms/{room}/messages", {"text": "one"})
    _until(lambda: recorder.named(EVENT, "host_message"), f"no live event: {recorder.calls}")
    lag = recorder.named(EVENT, "host_message")[0]["response_time"]
    assert 0 <= lag < 5000
    seen = feed.state.seq

    feed._lost(ConnectionResetError("cut by the test"))  # as a drop: it resumes by itself
    host.post(f"/api/rooms/{room}/messages", {"text": "missed while away"})
    _until(lambda: recorder.named(CONNECT, "resume"), "no resume")
    assert recorder.named(CONNECT, "resume")[0]["exception"] is None
    assert tally.counts["resumes"] == 1 and tally.counts["drops"] == 1
    _until(lambda: recorder.named(REPLAY, "host_message"), f"no replay: {recorder.calls}")
    assert feed.state.seq > seen
    host.post(f"/api/rooms/{room}/messages", {"text": "live again"})
    _until(lambda: len(recorder.named(EVENT, "host_message")) >= 2, "no live event after")
    assert tally.counts["events_replayed"] >= 1
    assert sum(tally.lag.values()) == len(recorder.named(EVENT, "host_message"))
    assert tally.counts.get("seq_regressions", 0) == 0
    feed.close()
    host.close()


def test_a_viewer_that_is_no_probe_resumes_from_what_it_never_decoded(
    service: EmbeddedService,
) -> None:
    room = scenario.new_room_id()
    host = Api(service.url, tokens.host_token(service.secret, room))
    scenario.create(host, room, stock=5, limit=1, hold_seconds=5, price_cents=100)
    recorder, tally = Recorder(), Tally()
    token = tokens.viewer_token(service.secret, room, "viewer-3")
    feed = RawFeed(service.url, room, token, recorder, tally, probe=False)
    assert feed.connect()
    frames = tally.counts["frames"]
    for text in ("a", "b", "c"):
        host.post(f"/api/rooms/{room}/messages", {"text": text})
    at = int(host.get(f"/api/rooms/{room}").body["seq"])
    _until(
        lambda: feed._undecoded is not None and f'"seq":{at},'.encode() in feed._undecoded,
        "the last event never came",
    )
    assert tally.counts["frames"] > frames and not recorder.named(EVENT, "host_message")
    feed._lost(ConnectionResetError("cut by the test"))
    _until(lambda: recorder.named(CONNECT, "resume"), "no resume")
    assert feed.state.seq == at  # from the undecoded frame
    assert tally.counts["resumes"] == 1
    feed.close()
    host.close()


def test_refused_connection_is_a_failure(service: EmbeddedService) -> None:
    recorder, tally = Recorder(), Tally()
    token = tokens.viewer_token(service.secret, "no-such-room", "viewer-2")
    feed = RawFeed(service.url, "no-such-room", token, recorder, tally, probe=True)
    assert not feed.connect()
    failure = recorder.named(CONNECT, "connect")[0]["exception"]
    assert failure is not None and "4404" in str(failure)
    assert tally.counts["connect_errors"] == 1


def test_service_log_names_its_stores(service: EmbeddedService) -> None:
    assert service.redis_url.startswith("redis://")
    assert service.database_url.startswith("postgresql://")
    assert Path(service.data_dir).is_dir()
