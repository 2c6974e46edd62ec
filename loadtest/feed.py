"""One simulated user's WebSocket feed of a room.

websocket-client runs on the sockets locust has monkey-patched with gevent, so a blocked read
yields to the other users (an asyncio client would not run inside a locust user at all). On a
reconnect the feed resumes with `since`/`epoch`; each event's publish-to-receive lag, from the
server's `ts`, is reported as a locust request of type "WS event" named by the event's type
(replayed events as "WS replay", so catching up does not pass for fan-out lag).
"""

from __future__ import annotations

import json
import random
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import websocket

from loadtest.tally import Tally

Fire = Callable[..., None]  # environment.events.request.fire
Listener = Callable[[dict[str, Any]], None]

CONNECT = "WS connect"
DROP = "WS drop"
EVENT = "WS event"
REPLAY = "WS replay"
RECV_TIMEOUT_S = 20.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)
# Close codes after which retrying at once is pointless (bad token, forbidden, no such room).
REFUSALS = frozenset({4401, 4403, 4404})


class ServerClosed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed by the server: {code} {reason}".strip())
        self.code = code


def ws_url(base_url: str, room: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/ws/rooms/{room}"


def _close_code(data: bytes) -> ServerClosed:
    if len(data) >= 2:
        (code,) = struct.unpack("!H", data[:2])
        return ServerClosed(code, data[2:].decode("utf-8", "replace"))
    return ServerClosed(1005)


class RoomFeed:
    def __init__(
        self,
        base_url: str,
        room: str,
        token: str,
        fire: Fire,
        tally: Tally,
        *,
        on_event: Listener | None = None,
        on_snapshot: Listener | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = ws_url(base_url, room)
        self.token = token
        self.fire = fire
        self.tally = tally
        self.on_event = on_event
        self.on_snapshot = on_snapshot
        self.timeout_s = timeout_s
        self.epoch = ""
        self.seq = 0
        self._replay_upto = 0  # events up to this seq came from a resume, not live fan-out
        self._ws: websocket.WebSocket | None = None
        self.closing = False  # set when the user stops: a close from then on is ours

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def _report(self, kind: str, name: str, started: float, exc: Exception | None) -> None:
        self.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exc,
            context={},
        )

    def connect(self) -> bool:
        """Open the socket and read the welcome; resume from seq/epoch when known."""
        query = {"token": self.token}
        if self.epoch:
            query.update(since=str(self.seq), epoch=self.epoch)
        name = "resume" if self.epoch else "connect"
        started = time.perf_counter()
        ws: websocket.WebSocket | None = None
        try:
            ws = websocket.create_connection(
                f"{self.url}?{urlencode(query)}",
                timeout=self.timeout_s,
                enable_multithread=True,
                skip_utf8_validation=True,  # json.loads checks UTF-8 anyway, in C
            )
            welcome = self._read_json(ws)
            if welcome.get("type") != "welcome":
                raise ValueError(f"expected welcome, got {welcome.get('type')!r}")
        except (websocket.WebSocketException, OSError, ValueError, ServerClosed) as exc:
            if ws is not None:
                ws.close(timeout=0)
            self._report(CONNECT, name, started, exc)
            self.tally.add("connect_errors")
            return False
        self._report(CONNECT, name, started, None)
        self.tally.add("connects")
        self.tally.add("resumes" if welcome.get("resumed") else "fresh_connects")
        ws.settimeout(RECV_TIMEOUT_S)
        self._ws = ws
        self._welcome(welcome)
        return True

    def _welcome(self, welcome: dict[str, Any]) -> None:
        epoch, seq = str(welcome.get("epoch", "")), int(welcome.get("seq", 0))
        if welcome.get("resumed"):
            self._replay_upto = seq  # what follows up to `seq` is the replay
        else:
            self._replay_upto = 0
            self.seq = seq
        self.epoch = epoch

    @staticmethod
    def _read_json(ws: websocket.WebSocket) -> dict[str, Any]:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise _close_code(data)
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                frame = json.loads(data)
                if not isinstance(frame, dict):
                    raise ValueError("a frame is a JSON object")
                return frame

    def run(self) -> None:
        """Read the room until the greenlet is killed; reconnect and resume on any drop."""
        failures = 0
        idle = 0
        while True:
            if self._ws is None:
                if self.connect():
                    failures = idle = 0
                    continue
                time.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)] * random.uniform(0.5, 1.5))
                failures += 1
                continue
            try:
                self.step()
                idle = 0
            except websocket.WebSocketTimeoutException:
                idle += 1
                if idle > 1 or not self.send({"type": "ping"}):
                    self._dropped(ServerClosed(1006, "no frame in time"))
            except ServerClosed as closed:
                self._dropped(closed)
                if closed.code in REFUSALS:
                    failures = len(BACKOFF_S)
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                self._dropped(exc)

    def step(self) -> None:
        """Read and handle one frame (blocking until one comes)."""
        if self._ws is None:
            raise websocket.WebSocketConnectionClosedException("not connected")
        frame = self._read_json(self._ws)
        self._frame(frame, time.time() * 1000)

    def _dropped(self, exc: Exception) -> None:
        if self.closing:
            self.close()
            return
        name = f"closed {exc.code}" if isinstance(exc, ServerClosed) else "dropped"
        self._report(DROP, name, time.perf_counter(), exc)
        self.tally.add("drops")
        self.close()

    def _frame(self, frame: dict[str, Any], received_ms: float) -> None:
        kind = frame.get("type")
        if kind == "events":
            skipped = int(frame.get("skipped") or 0)
            if skipped:
                self.tally.add("events_skipped", skipped)
            for event in frame.get("events", []):
                self._event(event, received_ms)
        elif kind == "snapshot":
            snapshot = frame.get("snapshot") or {}
            self.tally.add("snapshots")
            self.epoch = str(snapshot.get("epoch", self.epoch))
            self.seq = max(self.seq, int(snapshot.get("seq", 0)))
            if self.on_snapshot is not None:
                self.on_snapshot(snapshot)
        elif kind == "welcome":
            self._welcome(frame)
        elif kind == "error":
            self.tally.add(f"ws_error_{frame.get('error', 'unknown')}")
        elif kind == "reply":
            self.tally.add("ws_replies")

    def _event(self, event: dict[str, Any], received_ms: float) -> None:
        seq, epoch = int(event.get("seq", 0)), str(event.get("epoch", ""))
        if epoch != self.epoch:  # the room's log was started anew: nothing is a replay
            self.epoch, self._replay_upto, self.seq = epoch, 0, 0
        replayed = seq <= self._replay_upto
        self.seq = max(self.seq, seq)
        lag = max(0.0, received_ms - float(event.get("ts", received_ms)))
        kind = str(event.get("type", "unknown"))
        if self.on_event is not None:
            self.on_event(event)
        if not self.tally.measuring:
            return
        self.fire(
            request_type=REPLAY if replayed else EVENT,
            name=kind,
            response_time=lag,
            response_length=0,
            exception=None,
            context={},
        )
        if replayed:
            self.tally.add("events_replayed")
        else:
            self.tally.add("events")
            self.tally.lag_ms(lag)

    def send(self, message: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            ws.send(json.dumps(message))
        except (websocket.WebSocketException, OSError):
            return False
        return True

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close(timeout=0)  # a close frame, no wait for the answer: quick at test end
