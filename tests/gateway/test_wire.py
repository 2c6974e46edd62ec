"""The fan-out's direct writes and their fallback: with the pinned uvicorn, frames go straight to
each viewer's transport; without uvicorn's private protocol (another uvicorn, another server) or
without one of its attributes, they go through ASGI's `websocket.send`, and viewers get the same
events."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import gateway_testkit
import pytest
from gateway_testkit import Viewer, make_room, serve, ws_url
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

import gateway
from gateway import wire, wire_uvicorn
from live.app import websocket_options
from live.settings import Settings

SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl"
PINS = 4


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = True


def protocol_state(**state: Any) -> WebSocketsSansIOProtocol:
    """A stand-in for uvicorn's protocol with the state direct writes read."""
    writable = asyncio.Event()
    writable.set()
    fields = {
        "transport": Transport(),
        "writable": writable,
        "handshake_complete": True,
        "close_sent": False,
        "disconnected": False,
    }
    fields.update(state)
    return cast(WebSocketsSansIOProtocol, SimpleNamespace(**fields))


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the frames written straight to a transport (their sizes)."""
    written: list[int] = []
    try_write = wire_uvicorn.UvicornSocket.try_write

    def counting(self: wire_uvicorn.UvicornSocket, data: bytes) -> bool:
        done = try_write(self, data)
        if done:
            written.append(len(data))
        return done

    monkeypatch.setattr(wire_uvicorn.UvicornSocket, "try_write", counting)
    yield written


def reload_without_uvicorn_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next `load_fast_path` imports gateway.wire_uvicorn again (with what the test left)."""
    monkeypatch.delitem(sys.modules, "gateway.wire_uvicorn")
    monkeypatch.delattr(gateway, "wire_uvicorn")


def test_the_pinned_uvicorn_has_the_fast_path() -> None:
    assert wire.FAST_PATH.direct, wire.FAST_PATH.why_not
    assert wire.LiveWebSocketProtocol is wire_uvicorn.LiveWebSocketProtocol
    assert issubclass(wire_uvicorn.LiveWebSocketProtocol, WebSocketsSansIOProtocol)


def test_a_uvicorn_without_the_private_protocol_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    reload_without_uvicorn_protocol(monkeypatch)
    monkeypatch.setitem(sys.modules, SANSIO, None)  # the module is gone: ImportError
    path = wire.load_fast_path()
    assert path.protocol == "auto" and not path.direct
    scope = {"extensions": {wire_uvicorn.SCOPE_KEY: wire_uvicorn.UvicornSocket(protocol_state())}}
    assert path.writer(scope) is None


def test_a_uvicorn_without_write_flow_control_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn 0.35 to 0.52.0: the class is there, but `writable` never says the buffer is full."""
    reload_without_uvicorn_protocol(monkeypatch)
    older = types.ModuleType(SANSIO)
    older.WebSocketsSansIOProtocol = type(  # type: ignore[attr-defined]
        "WebSocketsSansIOProtocol", (asyncio.Protocol,), {"run_asgi": lambda self: None}
    )
    monkeypatch.setitem(sys.modules, SANSIO, older)
    path = wire.load_fast_path()
    assert path.protocol == "auto" and "0.52.1" in path.why_not


def test_a_protocol_without_the_state_gets_no_direct_socket() -> None:
    assert wire_uvicorn.UvicornSocket.of(protocol_state()) is not None
    protocol = protocol_state()
    del cast(Any, protocol).disconnected
    assert wire_uvicorn.UvicornSocket.of(protocol) is None
    assert wire_uvicorn.UvicornSocket.of(protocol_state(writable=True)) is None
    assert wire.DirectSocket.of({"extensions": {}}) is None
    assert wire.DirectSocket.of({}) is None


def test_direct_writes_only_while_the_socket_takes_them() -> None:
    protocol = protocol_state()
    transport = cast(Transport, protocol.transport)
    direct = wire_uvicorn.UvicornSocket(protocol)
    frame = wire.ENCODER.encode('{"type":"events"}')
    assert direct.try_write(frame) and transport.written == [frame]
    protocol.writable.clear()  # uvicorn's pause_writing: the transport's buffer is full
    assert not direct.try_write(frame)
    protocol.writable.set()
    for name in ("close_sent", "disconnected"):
        setattr(protocol, name, True)
        assert not direct.try_write(frame)
        setattr(protocol, name, False)
    transport.closing = True
    assert not direct.try_write(frame)
    assert transport.written == [frame]
    direct.abort()
    assert transport.aborted


async def pins_reach_a_viewer(settings: Settings) -> None:
    """A viewer over a real socket gets every pin the host makes, in order."""
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        viewer = await Viewer.open(ws_url(served.url, room.id))
        try:
            seqs = [(await room.pin(room.products[n % 2]))["seq"] for n in range(PINS)]
            await viewer.wait_for(lambda: len(viewer.critical()) >= PINS)
            assert [e["seq"] for e in viewer.critical()] == seqs
            assert viewer.disorder == viewer.stale == 0
        finally:
            await viewer.close()


async def test_frames_go_straight_to_the_transport(
    settings: Settings, direct_writes: list[int]
) -> None:
    await pins_reach_a_viewer(settings)
    assert direct_writes  # the snapshot, the pins' frames


@pytest.mark.parametrize("server", ["no direct socket", "uvicorn's own protocol"])
async def test_without_direct_writes_frames_go_through_asgi(
    settings: Settings, direct_writes: list[int], monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    if server == "no direct socket":
        # Our protocol runs, but the gateway finds no direct socket in the scope.
        monkeypatch.setattr(wire, "FAST_PATH", wire.fallback("forced by the test"))
    else:
        # Another uvicorn (or another server): our protocol is not there at all.
        def plain(settings: Settings) -> dict[str, Any]:
            return {**websocket_options(settings), "ws": "auto"}

        monkeypatch.setattr(gateway_testkit, "websocket_options", plain)
    await pins_reach_a_viewer(settings)
    assert direct_writes == []


async def test_an_accepted_connection_keeps_no_handshake_headers(settings: Settings) -> None:
    """Once accepted, a viewer's connection holds neither its scope's headers nor those of the
    request websockets parsed (kept alive by its parser): about 1.5 KiB a viewer."""
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        viewer = await Viewer.open(ws_url(served.url, room.id))
        try:
            (connection,) = served.gateway.hubs[room.id].connections
            assert connection.websocket.scope["headers"] == []
            direct = connection._direct
            assert isinstance(direct, wire_uvicorn.UvicornSocket)
            parser = direct._protocol.conn.parser
            assert isinstance(parser, types.GeneratorType) and parser.gi_frame is not None
            assert list(parser.gi_frame.f_locals["request"].headers.raw_items()) == []
            seq = (await room.pin(room.products[0]))["seq"]
            await viewer.wait_for(lambda: any(e["seq"] == seq for e in viewer.critical()))
        finally:
            await viewer.close()
