"""One viewer's WebSocket of a room on a raw socket, read by a callback of gevent's event loop:
no greenlet, no WebSocket library and, unless it is a probe, no JSON per frame, so one
load-generator process holds thousands of viewers for a sliver of a core.

The handshake and the welcome are read in the calling greenlet (gevent's socket, with a
timeout); then the socket is handed to a loop watcher whose callback cuts frames out of what
arrives (loadtest/wsframes.py) and answers pings. A probe decodes every frame (feed.py: lag,
seq, integrity); any other viewer counts frames and keeps the last `events` frame undecoded,
decoding it only to resume (its seq and epoch) after a drop, plus the frames a listener `wants`
and every frame that is not `events` (welcome, snapshot, replies: rare). A drop is followed by a
resume with backoff; a viewer that hears nothing for SILENCE_S (the server pings every 20 s) is
dropped. Plain ws:// only (the load tester runs beside the service or on its network).
"""

from __future__ import annotations

import json
import random
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import gevent
from gevent import socket as gsocket
from gevent.monkey import get_original

from loadtest import wsframes
from loadtest.feed import (
    CONNECT,
    DROP,
    REFUSALS,
    FeedState,
    Fire,
    Listener,
    ServerClosed,
    decode,
    report,
)
from loadtest.tally import Tally

RealSocket: Any = get_original("socket", "socket")  # not gevent's: read from a loop callback
EVENTS_HEAD = b'{"type":"events"'
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)
SILENCE_S = 50.0
WATCHDOG_EVERY_S = 5.0
READ_SIZE = 1 << 18

Wants = Callable[[bytes], bool]  # a frame (undecoded) a non-probe viewer must decode after all

_open: set[RawFeed] = set()  # feeds being read, for the watchdog
_watchdog: list[Any] = []  # its greenlet while feeds are open


class RawFeed:
    def __init__(
        self,
        base_url: str,
        room: str,
        token: str,
        fire: Fire,
        tally: Tally,
        *,
        probe: bool,
        on_event: Listener | None = None,
        on_snapshot: Listener | None = None,
        wants: Wants | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"raw viewers speak plain ws: an http:// URL, not {base_url!r}")
        self.address = (parts.hostname, parts.port or 80)
        self.netloc = parts.netloc
        self.path = f"/ws/rooms/{room}"
        self.token = token
        self.fire = fire
        self.tally = tally
        self.probe = probe
        self.wants = wants
        self.timeout_s = timeout_s
        self.state = FeedState(fire, tally, on_event=on_event, on_snapshot=on_snapshot)
        self.reader = wsframes.FrameReader()
        self.closing = False  # set when the user stops: a close from then on is ours
        self.failures = 0
        self.heard = 0.0  # time.monotonic() of the last bytes from the server
        self._first = True  # no connect has succeeded yet
        self._undecoded: bytes | None = None  # the last events frame, when not decoded
        self._sock: Any = None
        self._watcher: Any = None
        self._timer: Any = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def start(self) -> bool:
        """Connect now (blocking this greenlet); on failure keep retrying in the background."""
        if self.connect():
            return True
        self._retry()
        return False

    def connect(self) -> bool:
        """Open the socket, upgrade, read the welcome (resume from seq/epoch when known), then
        let the loop read it."""
        self._catch_up()
        query = {"token": self.token}
        if self.state.epoch:
            query.update(since=str(self.state.seq), epoch=self.state.epoch)
        name = "resume" if self.state.epoch else "connect"
        started = time.perf_counter()
        sock: Any = None
        try:
            sock = gsocket.create_connection(self.address, timeout=self.timeout_s)
            request, accept = wsframes.handshake(self.netloc, f"{self.path}?{urlencode(query)}")
            sock.sendall(request)
            head, rest = _read_head(sock)
            wsframes.upgraded(head, accept)
            self.reader = wsframes.FrameReader()
            welcome, early = self._read_welcome(sock, rest)
        except (OSError, wsframes.ProtocolError, ValueError, ServerClosed) as exc:
            if sock is not None:
                sock.close()
            report(self.fire, CONNECT, name, started, exc)
            self.tally.add("connect_errors")
            if isinstance(exc, ServerClosed) and exc.code in REFUSALS:
                self.failures = len(BACKOFF_S)
            return False
        report(self.fire, CONNECT, name, started, None)
        self.tally.add("connects")
        self.tally.add("resumes" if welcome.get("resumed") else "fresh_connects")
        if self._first:
            self._first = False
            self.tally.add("first_connects")
            self.tally.high("first_connect_ms", int(time.time() * 1000))
        self.state.welcome(welcome)
        self._watch(sock)
        now_ms = time.time() * 1000
        for message in early:
            self._message(message, now_ms)
        return True

    def _read_welcome(
        self, sock: Any, data: bytes
    ) -> tuple[dict[str, Any], list[wsframes.Message]]:
        """The welcome frame and the messages that came with it (bounded: a few reads)."""
        for _ in range(64):
            messages = self.reader.feed(data)
            for index, message in enumerate(messages):
                if message.opcode == wsframes.CLOSE:
                    raise ServerClosed(wsframes.close_code(message.payload))
                if message.opcode in (wsframes.TEXT, wsframes.BINARY):
                    welcome = decode(message.payload)
                    if welcome.get("type") != "welcome":
                        raise ValueError(f"expected welcome, got {welcome.get('type')!r}")
                    return welcome, messages[index + 1 :]
            data = sock.recv(READ_SIZE)
            if not data:
                raise ServerClosed(1006, "closed before the welcome")
        raise ValueError("no welcome frame")

    def _watch(self, sock: Any) -> None:
        raw = RealSocket(fileno=sock.detach())
        raw.setblocking(False)
        self._sock = raw
        self._watcher = gevent.get_hub().loop.io(raw.fileno(), 1)
        self._watcher.start(self._readable)
        self.heard = time.monotonic()
        _open.add(self)
        if not _watchdog:
            _watchdog.append(gevent.spawn(_watch_silence))

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(ServerClosed(1006, "connection closed"))
            return
        self.heard = time.monotonic()
        self.receive(data, time.time() * 1000)

    def receive(self, data: bytes, now_ms: float) -> None:
        """Bytes from the server (any piece of the stream), received at `now_ms`."""
        try:
            messages = self.reader.feed(data)
        except wsframes.ProtocolError as exc:
            self._lost(exc)
            return
        for message in messages:
            self._message(message, now_ms)

    def _message(self, message: wsframes.Message, now_ms: float) -> None:
        opcode, payload = message.opcode, message.payload
        if opcode in (wsframes.TEXT, wsframes.BINARY):
            self._text(payload, now_ms)
        elif opcode == wsframes.PING:
            self._send(wsframes.client_frame(wsframes.PONG, payload))
        elif opcode == wsframes.CLOSE:
            self._lost(ServerClosed(wsframes.close_code(payload)))

    def _text(self, payload: bytes, now_ms: float) -> None:
        self.tally.add("frames")
        if (
            not self.probe
            and payload.startswith(EVENTS_HEAD)
            and not (self.wants is not None and self.wants(payload))
        ):
            self._undecoded = payload
            return
        self._undecoded = None
        try:
            frame = decode(payload)
        except ValueError as exc:
            self._lost(exc)
            return
        self.state.frame(frame, now_ms, measure=self.probe)

    def _catch_up(self) -> None:
        """The position of the last frame this viewer did not decode."""
        payload, self._undecoded = self._undecoded, None
        if payload is not None:
            try:
                self.state.frame(decode(payload), 0.0, measure=False)
            except ValueError:
                self.tally.add("bad_frames")  # resumed from the last frame decoded before

    def _send(self, data: bytes) -> bool:
        sock = self._sock
        if sock is None:
            return False
        try:
            sent = sock.send(data)
        except OSError:
            sent = 0
        if sent != len(data):  # a viewer's few small frames never fill its socket's buffer
            self._lost(ServerClosed(1006, "could not write"))
            return False
        return True

    def send(self, message: dict[str, Any]) -> bool:
        return self._send(wsframes.client_frame(wsframes.TEXT, json.dumps(message).encode()))

    def _stop(self) -> None:
        _open.discard(self)
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _lost(self, exc: Exception) -> None:
        self._stop()
        if self.closing:
            return
        name = f"closed {exc.code}" if isinstance(exc, ServerClosed) else "dropped"
        report(self.fire, DROP, name, time.perf_counter(), exc)
        self.tally.add("drops")
        if isinstance(exc, ServerClosed) and exc.code in REFUSALS:
            self.failures = len(BACKOFF_S)
        self._retry(random.uniform(0.05, 0.5))

    def _retry(self, delay: float | None = None) -> None:
        if self.closing or self._timer is not None:
            return
        if delay is None:
            step = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
            delay = step * random.uniform(0.5, 1.5)
            self.failures += 1
        self._timer = gevent.spawn_later(delay, self._again)

    def _again(self) -> None:
        self._timer = None
        if self.closing:
            return
        if self.connect():
            self.failures = 0
        else:
            self._retry()

    def close(self) -> None:
        """Stop for good: a close frame (no wait for the answer), no reconnect."""
        self.closing = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.kill(block=False)
        if self._sock is not None:
            self._send(wsframes.client_frame(wsframes.CLOSE, struct.pack("!H", 1000)))
        self._stop()


def _read_head(sock: Any) -> tuple[bytes, bytes]:
    """The handshake answer's head and the bytes after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > wsframes.MAX_HEAD:
            raise wsframes.ProtocolError("handshake answer too long")
        more = sock.recv(4096)
        if not more:
            raise ServerClosed(1006, "closed during the handshake")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _watch_silence() -> None:
    """Drop the viewers that heard nothing for SILENCE_S; ends when none is open."""
    while _open:
        gevent.sleep(WATCHDOG_EVERY_S)
        limit = time.monotonic() - SILENCE_S
        for feed in [f for f in _open if f.heard < limit]:
            feed._lost(ServerClosed(1006, "no frame in time"))
    _watchdog.clear()
