"""One viewer's WebSocket session, from the handshake to the close: the origin and room checks,
the token (in the URL or the first message) and its expiry, the sync (resume from the log, or a
snapshot), then reading the client's messages and running its commands. The process-wide parts
(hubs, the shared subscription) are the gateway's (gateway/server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import timing
from gateway.auth import Claims, TokenError
from gateway.connection import Connection
from gateway.hub import RoomHub
from gateway.protocol import (
    CloseCode,
    Command,
    ProtocolError,
    error_frame,
    parse,
    reply_frame,
    token_life,
    welcome_frame,
)
from gateway.share_codes import sharer_of
from gateway.sync import covers
from rooms.errors import RETRY_AFTER_S, STORAGE_ERRORS, Refusal

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("live.gateway")


class Session:
    """Refusals are sent as close codes after the handshake (a browser cannot read the status
    of a refused handshake). The gateway's config is read as it is at each use."""

    __slots__ = ("gateway", "room", "websocket")

    def __init__(self, gateway: Gateway, websocket: WebSocket) -> None:
        self.gateway = gateway
        self.websocket = websocket
        self.room: str = websocket.path_params["room"]

    async def run(self) -> None:
        websocket, room, config = self.websocket, self.room, self.gateway.config
        origin = websocket.headers.get("origin")
        if config.allowed_origins and origin not in config.allowed_origins:
            await _refuse(websocket, CloseCode.FORBIDDEN, "origin not allowed")
            return
        if self.gateway.stopping:
            await _refuse(websocket, CloseCode.SERVICE_RESTART, "server restarting")
            return
        try:
            room_settings = await self.gateway.shared.settings.get(room)
        except Refusal:
            await _refuse(websocket, CloseCode.ROOM_NOT_FOUND, "no such room")
            return
        except Exception as exc:
            await _refuse(websocket, *_failed(room, "cannot read its settings", exc))
            return
        # Once accepted, the handshake's headers are gone (gateway/wire_uvicorn.py): read
        # websocket.headers, .url or .cookies only above this line.
        await websocket.accept()
        anonymous = config.allow_anonymous and room_settings.get("allow_anonymous", True)
        try:
            token = websocket.query_params.get("token")
            if token:
                claims: Claims | None = self._claims_for(token)
            elif not anonymous:
                claims = await self._await_auth()
            else:
                claims = None
        except _Refused as refused:
            with contextlib.suppress(Exception):
                await websocket.close(code=refused.code, reason=refused.reason)
            return
        except WebSocketDisconnect:
            return
        await self._visit(claims)
        connection = Connection(websocket, config.backpressure)
        _sign_in(connection, claims)
        try:
            hub = await self.gateway.join(room, connection)
        except Exception as exc:
            connection.close(*_failed(room, "cannot join", exc))
            await connection.finish()
            return
        await self._attended(hub, connection, claims)

    async def _attended(self, hub: RoomHub, connection: Connection, claims: Claims | None) -> None:
        """The session of a viewer in the room's hub, until either side closes."""
        gone = False
        try:
            async with asyncio.timeout(None) as reading:
                connection.on_closed = functools.partial(_cut, reading)  # lighter than a closure
                await self._sync(hub, connection, claims)
                gone = await self._serve(connection, claims)
        except WebSocketDisconnect:
            gone = True
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) and reading.expired()):
                connection.close(*_failed(self.room, "connection failed", exc))
            # else: closed by the server, and the close is done (or given up)
        finally:
            connection.on_closed = None
            try:
                await self.gateway.leave(hub, connection)
            finally:
                await connection.finish(wait_close=not gone)

    # -- the token --------------------------------------------------------------------------

    def _claims_for(self, token: str) -> Claims:
        try:
            claims = self.gateway.auth.claims(token)
        except TokenError as exc:
            raise _Refused(CloseCode.UNAUTHORIZED, exc.code) from None
        assert claims is not None
        if claims.room != self.room:
            raise _Refused(CloseCode.FORBIDDEN, "token for another room")
        return claims

    async def _await_auth(self) -> Claims:
        try:
            async with asyncio.timeout(self.gateway.config.auth_timeout_s):
                message = await self.websocket.receive()
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
        claims = self._claims_for(command.fields["token"])
        await self.websocket.send_text(reply_frame(command.ref, _auth_data(claims)))
        return claims

    def _reauth(
        self, connection: Connection, claims: Claims | None, command: Command
    ) -> Claims | None:
        """`auth` on an open connection: an anonymous viewer signs in, or a signed-in one
        refreshes its token before it runs out (the new `exp` applies). A token that is bad,
        for another room or for another user is refused and changes nothing."""
        try:
            fresh = self._claims_for(command.fields["token"])
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

    # -- share links ------------------------------------------------------------------------

    async def _visit(self, claims: Claims | None) -> None:
        """A visit through a share link (the `share` connect parameter), recorded before the
        sync, so that what the viewer buys once welcomed is attributed. Never in the way of
        watching: a bad code, or a store that fails, only means no credit."""
        params = self.websocket.query_params
        code = params.get("share")
        if not code:
            return
        try:
            sharer = sharer_of(self.gateway.auth.secret, self.room, code)
            actor = claims.actor if claims else None
            fresh = params.get("since") is None  # a resume is no new visit
            await self.gateway.referrals.visit(self.room, actor, sharer, fresh=fresh)
        except Refusal:
            return
        except Exception as exc:
            log_failure(self.room, "recording a share link's visit failed", exc)

    # -- sync and resume --------------------------------------------------------------------

    async def _sync(self, hub: RoomHub, connection: Connection, claims: Claims | None) -> None:
        """Resume from `since`/`epoch` when the log still holds what was missed, else send a
        snapshot. Frames that arrive meanwhile are held by the connection and released after."""
        restarted_at = hub.restarted_at
        await self._sync_once(hub, connection, claims)
        if (hub.epoch and connection.synced_epoch != hub.epoch) or (
            hub.restarted_at != restarted_at
        ):
            hub.resync([connection])  # the log changed while this viewer was being synced

    async def _sync_once(self, hub: RoomHub, connection: Connection, claims: Claims | None) -> None:
        """The snapshot or replay comes from a read shared with every viewer of the room that
        asks at the same time (gateway/sync.py), begun after this viewer joined its hub; or,
        for a replay, the latest one of its `since` when the hub has had nothing past it."""
        shared, room = self.gateway.shared, self.room
        params = self.websocket.query_params
        since, epoch = params.get("since"), params.get("epoch")
        user = claims.sub if claims else None
        life = token_life(claims.exp if claims else None, time.time())
        if since is not None and epoch and since.isascii() and since.isdigit() and len(since) < 19:
            at = hub.epoch, hub.seq, hub.restarted_at  # the hub once this viewer is in it
            replay = await shared.replays.get(
                (room, epoch, int(since)), fresh=lambda frame: covers(frame, *at)
            )
            if not replay.gap:
                connection.send(welcome_frame(True, replay.epoch, replay.seq, user, life))
                connection.send_sync(replay)
                return
        snapshot = await shared.snapshots.get(room)
        connection.send(welcome_frame(False, snapshot.epoch, snapshot.seq, user, life))
        connection.send_sync(snapshot)

    # -- the client's messages --------------------------------------------------------------

    async def _serve(self, connection: Connection, claims: Claims | None) -> bool:
        """Read and run the client's messages; True when the socket is gone (disconnect)."""
        config = self.gateway.config
        strikes: list[float] = []
        window_start, window_count = time.monotonic(), 0
        limit = config.messages_per_s
        while not connection.closed:
            message = await self.websocket.receive()
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
                if len(strikes) > config.abuse_limit:
                    connection.close(CloseCode.ABUSE, "too many bad messages", drain=True)
                    return False
                continue
            started = time.perf_counter()
            claims = await self._run(connection, claims, command)
            timing.command_done(command.type, started)
        return False

    async def _run(
        self, connection: Connection, claims: Claims | None, command: Command
    ) -> Claims | None:
        """Run one command; returns the connection's claims from now on (changed by `auth`)."""
        room = self.room
        if command.type == "ping":
            ts = await self.gateway.clock.now_ms()
            connection.send(reply_frame(command.ref, {"ts": ts}))
            return claims
        if command.type == "auth":
            return self._reauth(connection, claims, command)
        if claims is None:
            connection.send(
                error_frame(command.ref, "token_required", f"{command.type} needs a token")
            )
            return claims
        if claims.exp <= time.time():  # its close is due: nothing more runs on this token
            connection.send(error_frame(command.ref, "token_expired", "the token has expired"))
            return claims
        handler = self.gateway.handlers.get(command.type)
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


def log_failure(room: str, what: str, exc: BaseException) -> bool:
    """Log what failed for a room: a storage error as a warning (it is not ours to fix, and is
    tried again), anything else with its traceback. True for a storage error."""
    if isinstance(exc, STORAGE_ERRORS):
        log.warning("room %s: %s: %r", room, what, exc)
        return True
    log.error("room %s: %s", room, what, exc_info=exc)
    return False


def _failed(room: str, what: str, exc: Exception) -> tuple[int, str]:
    """Log a connection's failure and choose its close: TRY_AGAIN_LATER when a store failed,
    INTERNAL_ERROR for anything else."""
    if log_failure(room, what, exc):
        return CloseCode.TRY_AGAIN_LATER, "room unavailable: retry"
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
