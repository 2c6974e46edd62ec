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
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SCOPE_KEY = "live.wire"
# An endpoint that calls `scope["extensions"][DETACH_KEY](session)` and returns lets the ASGI
# stack unwind (a dozen framework coroutines and their closures, about 6 KiB a connection for
# as long as it lives) and the protocol's task then runs `session` alone, to the connection's end.
DETACH_KEY = "live.detach"
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


class Inbox:
    """What uvicorn's protocol uses of its `asyncio.Queue` of ASGI events (`put_nowait`, `get`,
    `empty`), for its one reader, without the queue's three deques and Event: a list and, while
    the reader waits, a future. Thousands of idle viewers hold one each."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:  # each wake-up follows a put (or the reader is cancelled)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class LeanEvent(asyncio.Event):
    """An asyncio.Event whose waiters are a list, not a deque (600 bytes a connection): the
    socket's `writable` flag is waited on rarely, by one writer at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: Any = []  # Event appends, removes and iterates: a list does all three


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, with a direct socket in the ASGI scope, leaner per
    connection: the `Inbox` and `LeanEvent` above, the handshake's request, response and
    headers let go once the connection is accepted, and a way out of the ASGI stack
    (`DETACH_KEY`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: Any = Inbox()
        self.writable = LeanEvent()
        self.writable.set()
        self._asgi_app = self.app
        self.app = self._app_then_detached
        self._detached: Coroutine[Any, Any, None] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)  # makes the scope and a task that starts the app later
        extensions: dict[str, Any] | None = getattr(self, "scope", {}).get("extensions")
        if extensions is not None:
            extensions[DETACH_KEY] = self._detach
            direct = UvicornSocket.of(self)
            if direct is not None:
                extensions[SCOPE_KEY] = direct

    def _detach(self, session: Coroutine[Any, Any, None]) -> None:
        if self._detached is not None:
            session.close()
            raise RuntimeError("this connection's session is detached already")
        self._detached = session

    async def _app_then_detached(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app; then, once its stack has unwound, the session it detached."""
        await self._asgi_app(scope, receive, send)
        session, self._detached = self._detached, None
        if session is not None:
            await session

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and "response" in vars(self):
            self._let_go_of_the_handshake()

    def _let_go_of_the_handshake(self) -> None:
        """Only the handshake reads the request's headers, and the gateway reads the scope's
        before it accepts: once accepted, both are emptied (about 1.5 KiB a viewer). The
        request itself lives on in websockets' parser (a local of its generator), so its
        headers are cleared rather than dropped."""
        self.request.headers.clear()
        headers = self.scope.get("headers")
        if isinstance(headers, list):  # Starlette's copy, when it read them (or uvicorn's)
            headers.clear()
        del self.request, self.response


def detacher(scope: Mapping[str, Any]) -> Callable[[Coroutine[Any, Any, None]], None] | None:
    """How an endpoint of this connection detaches its session from the ASGI stack, if it can."""
    detach = (scope.get("extensions") or {}).get(DETACH_KEY)
    return detach if callable(detach) else None


def direct_socket(scope: Mapping[str, Any]) -> UvicornSocket | None:
    """The direct socket `LiveWebSocketProtocol` put in this connection's scope, if any."""
    direct = (scope.get("extensions") or {}).get(SCOPE_KEY)
    return direct if isinstance(direct, UvicornSocket) else None
