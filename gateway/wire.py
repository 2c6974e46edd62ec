"""The fan-out fast path: a tick's frame is framed for the wire once (a server frame is not
masked, so the same bytes suit every viewer) and written straight to each viewer's transport
while nothing is queued for it.

Going through ASGI costs tens of microseconds per viewer per frame (a send coroutine, event
wake-ups, framing again for each connection); the direct write is one `transport.write`. That
needs the server's WebSocket protocol to expose itself, which only uvicorn's private sans-I/O
protocol can be made to do: gateway/wire_uvicorn.py holds all of that. This module is the small
interface the gateway uses: `LiveWebSocketProtocol` (what to give uvicorn as `ws=`) and
`DirectSocket.of(scope)` (a connection's `DirectWriter`, or None), and `detacher(scope)`.
When uvicorn lacks what
direct writes need, or another server runs the app, `LiveWebSocketProtocol` is uvicorn's own
choice ("auto"), `DirectSocket.of` answers None and every frame goes through the public ASGI
`websocket.send`: everything works, only slower.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("live.gateway")
_CACHE_SIZE = 8


Detach = Callable[[Coroutine[Any, Any, None]], None]


class DirectWriter(Protocol):
    def try_write(self, data: bytes) -> bool:
        """Write pre-framed bytes now and return True, or return False when the socket cannot
        take them right now (the caller queues them for the ASGI path)."""
        ...

    def abort(self) -> None:
        """Drop the connection without a close handshake."""
        ...


@dataclass(frozen=True)
class FastPath:
    """What the server offers for direct writes: the `ws=` protocol to run and how to find a
    connection's writer in its scope."""

    protocol: type[asyncio.Protocol] | str
    writer: Callable[[Mapping[str, Any]], DirectWriter | None]
    why_not: str = ""  # set when this is the fallback
    detacher: Callable[[Mapping[str, Any]], Detach | None] = lambda scope: None

    @property
    def direct(self) -> bool:
        return not self.why_not


def _no_writer(scope: Mapping[str, Any]) -> DirectWriter | None:
    return None


def fallback(why: str) -> FastPath:
    """No direct writes: uvicorn picks its WebSocket protocol, frames go through ASGI."""
    return FastPath("auto", _no_writer, why)


def load_fast_path() -> FastPath:
    try:
        from gateway import wire_uvicorn
    except ImportError as exc:
        log.warning("WebSocket frames go through ASGI only (no direct writes): %s", exc)
        return fallback(str(exc))
    return FastPath(
        wire_uvicorn.LiveWebSocketProtocol,
        wire_uvicorn.direct_socket,
        detacher=wire_uvicorn.detacher,
    )


FAST_PATH = load_fast_path()
LiveWebSocketProtocol = FAST_PATH.protocol  # uvicorn's `ws=`


class DirectSocket:
    @staticmethod
    def of(scope: Mapping[str, Any]) -> DirectWriter | None:
        """This connection's direct writer, or None: send through ASGI."""
        return FAST_PATH.writer(scope)


def detacher(scope: Mapping[str, Any]) -> Detach | None:
    """How an endpoint hands its connection's session to the protocol and returns, so the ASGI
    stack's coroutines do not live as long as the connection (gateway/wire_uvicorn.py); None:
    the endpoint runs the session itself."""
    return FAST_PATH.detacher(scope)


class FrameEncoder:
    """Text frame bytes for a str, built once for all viewers of the same frame."""

    def __init__(self) -> None:
        self._recent: dict[int, tuple[str, bytes]] = {}

    def encode(self, text: str) -> bytes:
        hit = self._recent.get(id(text))
        if hit is not None and hit[0] is text:
            return hit[1]
        data = text_frame(text.encode())
        if len(self._recent) >= _CACHE_SIZE:
            self._recent.clear()
        self._recent[id(text)] = (text, data)
        return data


def text_frame(payload: bytes) -> bytes:
    """RFC 6455 unmasked, final text frame."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = b"\x81\x7e" + size.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + size.to_bytes(8, "big")
    return head + payload


ENCODER = FrameEncoder()
