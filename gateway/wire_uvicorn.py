"""The one module that reaches into uvicorn's private WebSocket protocol, for gateway/wire.py.

`LiveWebSocketProtocol` is uvicorn's websockets-sansio protocol (its default for `--ws auto`)
that publishes a `UvicornSocket` in the connection's ASGI scope: the gateway then writes
pre-framed bytes straight to the transport. It relies on private parts of uvicorn: the class,
and its `transport`, `writable` (cleared by `pause_writing` while the transport's buffer is
full), `handshake_complete`, `close_sent` and `disconnected`. uvicorn 0.52.1 is the first with
all of them (write flow control and `disconnected` came then); pyproject.toml pins it.

Importing this module raises ImportError when the class or its flow control is missing (another
uvicorn); a connection whose protocol lacks one of the attributes is given no direct socket. In
both cases the gateway sends through the public ASGI `websocket.send`, which is slower only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SCOPE_KEY = "live.wire"
FLOW_CONTROL = ("pause_writing", "resume_writing")  # WebSocketsSansIOProtocol's own, >= 0.52.1
STATE = ("transport", "writable", "handshake_complete", "close_sent", "disconnected")

if not all(name in vars(WebSocketsSansIOProtocol) for name in FLOW_CONTROL):
    raise ImportError("uvicorn's websockets-sansio protocol has no write flow control (< 0.52.1)")


class UvicornSocket:
    """Writes pre-framed bytes to one viewer's transport when that is safe right now."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, protocol: WebSocketsSansIOProtocol) -> UvicornSocket | None:
        """A direct socket on `protocol`, or None when it lacks the state direct writes read."""
        if not all(hasattr(protocol, name) for name in STATE):
            return None
        if not isinstance(protocol.writable, asyncio.Event):
            return None
        return cls(protocol)

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


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, with a direct socket in the ASGI scope."""

    async def run_asgi(self) -> None:
        direct = UvicornSocket.of(self)
        extensions: dict[str, Any] | None = self.scope.get("extensions")
        if direct is not None and extensions is not None:
            extensions[SCOPE_KEY] = direct
        await super().run_asgi()


def direct_socket(scope: Mapping[str, Any]) -> UvicornSocket | None:
    """The direct socket `LiveWebSocketProtocol` put in this connection's scope, if any."""
    direct = (scope.get("extensions") or {}).get(SCOPE_KEY)
    return direct if isinstance(direct, UvicornSocket) else None
