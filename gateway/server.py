"""The gateway of one process: the WebSocket endpoint, its room hubs, the shared subscription,
presence reports and the routing of client commands to the handlers it was given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import metrics
from gateway.auth import Authenticator, Claims, TokenError
from gateway.clock import ServerClock
from gateway.commands import Handler
from gateway.connection import Backpressure, Connection
from gateway.hub import HubConfig, RoomHub, replay_frame
from gateway.protocol import (
    CloseCode,
    Command,
    ProtocolError,
    error_frame,
    parse,
    reply_frame,
    snapshot_frame,
    token_life,
    welcome_frame,
)
from gateway.subscriber import Subscriber
from rooms.errors import RETRY_AFTER_S, STORAGE_ERRORS, Refusal
from rooms.log import RoomLog
from rooms.presence import Presence
from rooms.service import RoomService

log = logging.getLogger("live.gateway")


REPLAY_LIMIT = 1000
AUTH_TIMEOUT_S = 5.0
ABUSE_LIMIT = 20  # bad messages per minute before the connection is closed
MESSAGES_PER_S = 20


@dataclass(frozen=True)
class GatewayConfig:
    tick_s: float = 0.05
    max_tick_s: float = 0.2
    lossy_per_tick: int = 20
    backpressure: Backpressure = field(default_factory=Backpressure)
    allowed_origins: tuple[str, ...] = ()  # empty: any origin
    allow_anonymous: bool = True  # False: every viewer needs a token, whatever the room says
    presence_interval_s: float = 1.0
    auth_timeout_s: float = AUTH_TIMEOUT_S  # for the first (auth) message where one is needed
    replay_limit: int = REPLAY_LIMIT  # events a resume may replay; further behind: snapshot
    messages_per_s: int = MESSAGES_PER_S  # client messages per second before rate_limited
    abuse_limit: int = ABUSE_LIMIT  # bad messages per minute before ABUSE
    catch_up_interval_s: float = 1.0


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        rooms: RoomService,
        room_log: RoomLog,
        presence: Presence,
        auth: Authenticator,
        handlers: dict[str, Handler],
    ) -> None:
        self.config = config
        self.rooms = rooms
        self.log = room_log
        self.presence = presence
        self.auth = auth
        self.handlers = handlers
        self.hubs: dict[str, RoomHub] = {}
        self._by_channel: dict[str, RoomHub] = {}
        self._hub_lock = asyncio.Lock()
        self.subscriber = Subscriber(rooms.redis, self._deliver, self._reconnected)
        self.clock = ServerClock(rooms.redis)
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.subscriber.start()
        self._background = [
            asyncio.create_task(self._presence_loop(), name="gateway-presence"),
            asyncio.create_task(self._catch_up_loop(), name="gateway-catch-up"),
        ]

    async def stop(self) -> None:
        """Close every viewer with SERVICE_RESTART (they reconnect elsewhere and resume)."""
        self._stopping = True
        for hub in list(self.hubs.values()):
            hub.flush()
            for connection in list(hub.connections):
                connection.close(
                    CloseCode.SERVICE_RESTART, "server restarting: reconnect", drain=True
                )
        await asyncio.sleep(0.1)
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for hub in list(self.hubs.values()):
            await hub.stop()
        await self.subscriber.stop()

    # -- hubs ------------------------------------------------------------------------------

    def _deliver(self, channel: str, event: bytes) -> None:
        hub = self._by_channel.get(channel)
        if hub is not None:
            hub.receive(event)

    def _reconnected(self) -> None:
        for hub in self.hubs.values():
            hub.fill_gap()

    async def _join(self, room: str, connection: Connection) -> RoomHub:
        async with self._hub_lock:
            hub = self.hubs.get(room)
            if hub is None:
                config = HubConfig(
                    self.config.tick_s, self.config.lossy_per_tick, self.config.max_tick_s
                )
                hub = RoomHub(room, config, self.log.read_since, self.log.position, self._snapshot)
                channel = self.log.keys(room).channel
                await hub.start()
                self.hubs[room] = hub
                self._by_channel[channel] = hub
                # Subscribed after the hub knows the log position: what is published before the
                # subscription takes effect shows up as a gap (next event, or the catch-up loop).
                await self.subscriber.subscribe(channel)
            hub.add(connection)
            connection.on_stale = lambda stale: hub.resync([stale])
            metrics.CONNECTIONS.inc()
            return hub

    async def _leave(self, hub: RoomHub, connection: Connection) -> None:
        async with self._hub_lock:
            if connection in hub.connections:
                hub.discard(connection)
                metrics.CONNECTIONS.dec()
            if hub.connections or self.hubs.get(hub.room) is not hub:
                return
            channel = self.log.keys(hub.room).channel
            del self.hubs[hub.room]
            del self._by_channel[channel]
            await self.subscriber.unsubscribe(channel)
            await hub.stop()
        try:
            await self.presence.report(hub.room, 0)
        except STORAGE_ERRORS as exc:  # this process's report expires by itself
            log.warning("room %s: presence report on leaving failed: %s", hub.room, exc)
        except Exception:
            log.exception("room %s: presence report on leaving failed", hub.room)

    async def _snapshot(self, room: str) -> dict[str, Any]:
        return await self.rooms.snapshot(room)

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.presence_interval_s)
            for room, hub in list(self.hubs.items()):
                try:
                    tally = await self.presence.report(room, len(hub.connections))
                    if tally.announce:
                        await self.log.publish(room, "viewers", {"count": tally.total})
                except Exception as exc:
                    log.warning("room %s: presence report failed: %s", room, exc)

    async def _catch_up_loop(self) -> None:
        """Backstop for a pub/sub message lost without a visible reconnect: compare each hub
        with its room's log and fill what the hub still lacks one interval later (an event in
        flight is not a gap), or at once when the log changed under it (new epoch, or a seq
        behind the hub's after Redis lost writes)."""
        seen: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.config.catch_up_interval_s)
            for room, hub in list(self.hubs.items()):
                try:
                    epoch, seq = await self.log.position(room)
                except STORAGE_ERRORS as exc:  # tried again next interval
                    log.warning("room %s: catch-up read failed: %s", room, exc)
                    continue
                except Exception:  # a backstop must not stop for one room's bad answer
                    log.exception("room %s: catch-up read failed", room)
                    continue
                if epoch != hub.epoch or seq < hub.seq or hub.seq < seen.get(room, 0):
                    hub.fill_gap()
                seen[room] = seq
            for room in [r for r in seen if r not in self.hubs]:
                del seen[room]

    # -- the endpoint --------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        """Refusals are sent as close codes after the handshake (a browser cannot read the
        status of a refused handshake)."""
        room: str = websocket.path_params["room"]
        origin = websocket.headers.get("origin")
        if self.config.allowed_origins and origin not in self.config.allowed_origins:
            await _refuse(websocket, CloseCode.FORBIDDEN, "origin not allowed")
            return
        if self._stopping:
            await _refuse(websocket, CloseCode.SERVICE_RESTART, "server restarting")
            return
        try:
            room_settings = await self.rooms.settings(room)
        except Refusal:
            await _refuse(websocket, CloseCode.ROOM_NOT_FOUND, "no such room")
            return
        except Exception as exc:
            await _refuse(websocket, *_failed(room, "cannot read its settings", exc))
            return
        await websocket.accept()
        anonymous = self.config.allow_anonymous and room_settings.get("allow_anonymous", True)
        try:
            token = websocket.query_params.get("token")
            if token:
                claims: Claims | None = self._claims_for(token, room)
            elif not anonymous:
                claims = await self._await_auth(websocket, room)
            else:
                claims = None
        except _Refused as refused:
            with contextlib.suppress(Exception):
                await websocket.close(code=refused.code, reason=refused.reason)
            return
        except WebSocketDisconnect:
            return
        connection = Connection(websocket, self.config.backpressure)
        _sign_in(connection, claims)
        try:
            hub = await self._join(room, connection)
        except Exception as exc:
            connection.close(*_failed(room, "cannot join", exc))
            await connection.finish()
            return
        gone = False
        try:
            async with asyncio.timeout(None) as reading:
                connection.on_closed = lambda: _cut(reading)
                await self._sync(websocket, hub, connection, claims)
                gone = await self._serve(websocket, room, connection, claims)
        except WebSocketDisconnect:
            gone = True
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) and reading.expired()):
                connection.close(*_failed(room, "connection failed", exc))
            # else: closed by the server, and the close is done (or given up)
        finally:
            connection.on_closed = None
            try:
                await self._leave(hub, connection)
            finally:
                await connection.finish(wait_close=not gone)

    def _claims_for(self, token: str, room: str) -> Claims:
        try:
            claims = self.auth.claims(token)
        except TokenError as exc:
            raise _Refused(CloseCode.UNAUTHORIZED, exc.code) from None
        assert claims is not None
        if claims.room != room:
            raise _Refused(CloseCode.FORBIDDEN, "token for another room")
        return claims

    async def _await_auth(self, websocket: WebSocket, room: str) -> Claims:
        try:
            async with asyncio.timeout(self.config.auth_timeout_s):
                message = await websocket.receive()
        except TimeoutError:
            raise _Refused(CloseCode.AUTH_TIMEOUT, "send an auth message first") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        try:
            command = parse(message.get("text") or message.get("bytes") or b"")
        except ProtocolError:
            raise _Refused(CloseCode.UNAUTHORIZED, "the first message must be auth") from None
        if command.type != "auth":
            raise _Refused(CloseCode.UNAUTHORIZED, "the first message must be auth")
        claims = self._claims_for(command.fields["token"], room)
        await websocket.send_text(reply_frame(command.ref, _auth_data(claims)))
        return claims

    async def _sync(
        self, websocket: WebSocket, hub: RoomHub, connection: Connection, claims: Claims | None
    ) -> None:
        """Resume from `since`/`epoch` when the log still holds what was missed, else send a
        snapshot. Frames that arrive meanwhile are held by the connection and released after."""
        await self._sync_once(websocket, hub.room, connection, claims)
        if hub.epoch and connection.synced_epoch != hub.epoch:
            hub.resync([connection])  # the log changed while this viewer was being synced

    async def _sync_once(
        self, websocket: WebSocket, room: str, connection: Connection, claims: Claims | None
    ) -> None:
        params = websocket.query_params
        since, epoch = params.get("since"), params.get("epoch")
        user = claims.sub if claims else None
        life = token_life(claims.exp if claims else None, time.time())
        if since is not None and epoch and since.isascii() and since.isdigit() and len(since) < 19:
            replay = await self.log.read_since(room, epoch, int(since), self.config.replay_limit)
            if not replay.gap:
                connection.send(welcome_frame(True, replay.epoch, replay.seq, user, life))
                if replay.events:
                    connection.send(replay_frame(replay.events, self.config.lossy_per_tick))
                connection.synced(replay.epoch, replay.seq)
                return
        snapshot = await self.rooms.snapshot(room)
        epoch, seq = str(snapshot["epoch"]), int(snapshot["seq"])
        connection.send(welcome_frame(False, epoch, seq, user, life))
        connection.send(snapshot_frame(snapshot))
        connection.synced(epoch, seq)

    async def _serve(
        self, websocket: WebSocket, room: str, connection: Connection, claims: Claims | None
    ) -> bool:
        """Read and run the client's messages; True when the socket is gone (disconnect)."""
        strikes: list[float] = []
        window_start, window_count = time.monotonic(), 0
        limit = self.config.messages_per_s
        while not connection.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return True
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            now = time.monotonic()
            if now - window_start >= 1.0:
                window_start, window_count = now, 0
            window_count += 1
            try:
                if window_count > limit:
                    raise ProtocolError("rate_limited", f"at most {limit} messages/s")
                command = parse(text)
            except ProtocolError as exc:
                connection.send(error_frame(exc.ref, exc.code, exc.detail))
                strikes = [t for t in strikes if now - t < 60] + [now]
                if len(strikes) > self.config.abuse_limit:
                    connection.close(CloseCode.ABUSE, "too many bad messages", drain=True)
                    return False
                continue
            claims = await self._run(room, connection, claims, command)
        return False

    async def _run(
        self, room: str, connection: Connection, claims: Claims | None, command: Command
    ) -> Claims | None:
        """Run one command; returns the connection's claims from now on (changed by `auth`)."""
        if command.type == "ping":
            ts = await self.clock.now_ms()
            connection.send(reply_frame(command.ref, {"ts": ts}))
            return claims
        if command.type == "auth":
            return self._reauth(room, connection, claims, command)
        if claims is None:
            connection.send(
                error_frame(command.ref, "token_required", f"{command.type} needs a token")
            )
            return claims
        if claims.exp <= time.time():  # its close is due: nothing more runs on this token
            connection.send(error_frame(command.ref, "token_expired", "the token has expired"))
            return claims
        handler = self.handlers.get(command.type)
        if handler is None:
            connection.send(
                error_frame(command.ref, "unavailable", f"{command.type} is not available here")
            )
            return claims
        try:
            data = await handler(room, claims.actor, command.fields)
        except Refusal as exc:
            extra = {} if exc.retry_after_s is None else {"retry_after_s": exc.retry_after_s}
            connection.send(error_frame(command.ref, exc.code, exc.detail, **extra))
        except STORAGE_ERRORS as exc:
            log.warning("room %s: %s failed, a store is unavailable: %r", room, command.type, exc)
            connection.send(
                error_frame(
                    command.ref,
                    "unavailable",
                    "a store is briefly unavailable: retry",
                    retry_after_s=RETRY_AFTER_S,
                )
            )
        except Exception:
            log.exception("room %s: %s failed", room, command.type)
            connection.send(error_frame(command.ref, "internal_error", "the command failed"))
        else:
            connection.send(reply_frame(command.ref, data))
        return claims

    def _reauth(
        self, room: str, connection: Connection, claims: Claims | None, command: Command
    ) -> Claims | None:
        """`auth` on an open connection: an anonymous viewer signs in, or a signed-in one
        refreshes its token before it runs out (the new `exp` applies). A token that is bad,
        for another room or for another user is refused and changes nothing."""
        try:
            fresh = self._claims_for(command.fields["token"], room)
        except _Refused as refused:
            code = "forbidden" if refused.code == CloseCode.FORBIDDEN else "unauthorized"
            connection.send(error_frame(command.ref, code, refused.reason))
            return claims
        if claims is not None and fresh.sub != claims.sub:
            connection.send(error_frame(command.ref, "forbidden", "token for another user"))
            return claims
        _sign_in(connection, fresh)
        connection.send(reply_frame(command.ref, _auth_data(fresh)))
        return fresh


def _failed(room: str, what: str, exc: Exception) -> tuple[int, str]:
    """Log a connection's failure and choose its close: TRY_AGAIN_LATER when a store failed
    (a warning: it is not ours to fix), INTERNAL_ERROR for anything else (with its traceback)."""
    if isinstance(exc, STORAGE_ERRORS):
        log.warning("room %s: %s: %r", room, what, exc)
        return CloseCode.TRY_AGAIN_LATER, "room unavailable: retry"
    log.error("room %s: %s", room, what, exc_info=exc)
    return CloseCode.INTERNAL_ERROR, "internal error: reconnect"


def _sign_in(connection: Connection, claims: Claims | None) -> None:
    """The connection acts as `claims` until their `exp`, when it is closed with UNAUTHORIZED
    unless a fresh token came first (one timer per connection, re-armed by each refresh)."""
    connection.user = claims.sub if claims else None
    connection.close_at(claims.exp if claims else None, CloseCode.UNAUTHORIZED, "token_expired")


def _auth_data(claims: Claims) -> dict[str, Any]:
    return {"user": claims.sub, **token_life(claims.exp, time.time())}


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with `code`: the client sees the code, not a failed handshake."""
    with contextlib.suppress(Exception):
        await websocket.accept()
        await websocket.close(code=code, reason=reason)


def _cut(reading: asyncio.Timeout) -> None:
    """Stop waiting for the client's messages (the server closed the connection)."""
    if not reading.expired():
        with contextlib.suppress(RuntimeError):  # the block is already left
            reading.reschedule(asyncio.get_running_loop().time())
