"""The fan-out fast path: a tick's frame is framed for the wire once (a server frame is not
masked, so the same bytes suit every viewer) and written straight to each viewer's transport
while nothing is queued for it.

Going through ASGI costs tens of microseconds per viewer per frame (a send coroutine, event
wake-ups, framing again for each connection); the direct write is one `transport.write`. It
needs uvicorn's sans-I/O WebSocket protocol to expose itself: `LiveWebSocketProtocol`, given to
uvicorn as `ws=`. Without it (another server), connections use the queued ASGI path only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SCOPE_KEY = "live.wire"
_CACHE_SIZE = 8


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, reachable from the ASGI scope for direct writes."""

    async def run_asgi(self) -> None:
        self.scope["extensions"][SCOPE_KEY] = self  # type: ignore[assignment]
        await super().run_asgi()


class DirectSocket:
    """Writes pre-framed bytes to one viewer's transport when that is safe right now."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, scope: Mapping[str, Any]) -> DirectSocket | None:
        protocol = (scope.get("extensions") or {}).get(SCOPE_KEY)
        return cls(protocol) if isinstance(protocol, WebSocketsSansIOProtocol) else None

    def try_write(self, data: bytes) -> bool:
        """True if written; False when the transport is paused or the socket is closing (the
        caller then queues the frame and its writer waits for the socket)."""
        p = self._protocol
        if (
            not p.handshake_complete
            or p.close_sent
            or p.disconnected
            or not p.writable.is_set()
            or p.transport.is_closing()
        ):
            return False
        p.transport.write(data)
        return True

    def abort(self) -> None:
        """Drop the connection without a close handshake (a client that stopped reading)."""
        self._protocol.transport.abort()


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
