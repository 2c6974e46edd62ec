"""The gateway of one process: the registry every session shares: a hub per room with local
viewers, the pub/sub subscription that feeds them (one connection, or one per shard on a Redis
Cluster), presence reports and the catch-up backstop, and the closing of every viewer when the
process stops. One connection's session (its
token, sync, commands) is gateway/session.py's.

The background work is exposed, not run: `loops()` lists it for the composition root, which runs
it in the process's task group (live/background.py) and cancels it there at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.websockets import WebSocket

from flash_sales.referrals import Referrals
from gateway import metrics
from gateway.auth import Authenticator
from gateway.clock import ServerClock
from gateway.commands import Handler
from gateway.connection import Backpressure, Connection
from gateway.hub import HubConfig, RoomHub
from gateway.protocol import CloseCode
from gateway.session import Session, log_failure
from gateway.subscriber import subscriber_for
from gateway.sync import SharedReads
from gateway.wire import detacher
from rooms.log import RoomLog
from rooms.presence import Presence
from rooms.service import RoomService

REPLAY_LIMIT = 1000
AUTH_TIMEOUT_S = 5.0
ABUSE_LIMIT = 20  # bad messages per minute before the connection is closed
MESSAGES_PER_S = 20


@dataclass(frozen=True)
class GatewayConfig:
    tick_s: float = 0.05
    max_tick_s: float = 0.2
    lossy_per_tick: int = 20
    lossy_per_s: float = 10.0  # a room's lossy events let through per second (gateway/hub.py)
    group_size: int = 500  # viewers of a room written in one burst (see gateway/hub.py)
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
        referrals: Referrals,
    ) -> None:
        """`referrals`: visits through share links, recorded as viewers connect (`share`)."""
        self.config = config
        self.rooms = rooms
        self.log = room_log
        self.presence = presence
        self.auth = auth
        self.handlers = handlers
        self.referrals = referrals
        self.shared = SharedReads(rooms, room_log, self._sync_limits, config.tick_s)
        self.hubs: dict[str, RoomHub] = {}
        self._by_channel: dict[str, RoomHub] = {}  # a room's events channel -> its hub
        self._by_direct: dict[str, RoomHub] = {}  # a room's direct channel -> its hub
        self._hub_lock = asyncio.Lock()
        self.subscriber = subscriber_for(rooms.redis, self._deliver, self._reconnected)
        self.clock = ServerClock(rooms.redis)
        self._seen: dict[str, int] = {}  # each hub's room seq at the previous catch-up
        self._sessions = 0
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self.stopping = False

    # -- lifecycle -----------------------------------------------------------------------

    def loops(self) -> list[tuple[str, float | None, Callable[[], Awaitable[None]]]]:
        """The gateway's background work as (name, seconds between runs, work); None: a
        long-running coroutine (the subscription)."""
        return [
            ("gateway.subscriber", None, self.subscriber.run),
            ("gateway.presence", self.config.presence_interval_s, self.report_presence),
            ("gateway.catch_up", self.config.catch_up_interval_s, self.catch_up),
            ("gateway.anonymous_visits", 1.0, self.referrals.write_anonymous_visits),
        ]

    async def close_viewers(self) -> None:
        """Take no more viewers and close every one with SERVICE_RESTART (they reconnect to
        another process and resume), after what their room has buffered; returns once every
        session has ended (a viewer that does not read its close is dropped after the close
        timeout). The caller bounds the wait."""
        self.stopping = True
        for hub in list(self.hubs.values()):
            hub.flush()
            for connection in list(hub.connections):
                connection.close(
                    CloseCode.SERVICE_RESTART, "server restarting: reconnect", drain=True
                )
        await self._no_sessions.wait()

    async def stop_hubs(self) -> None:
        """Stop the hubs still running (those of sessions that did not end in time)."""
        for hub in list(self.hubs.values()):
            await hub.stop()

    # -- the endpoint ----------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        """Run the viewer's session, detached from the ASGI stack where the server allows it
        (gateway/wire.py `detacher`): the stack's coroutines then do not live as long as it."""
        self._sessions += 1
        self._no_sessions.clear()
        session = self._session(websocket)
        detach = detacher(websocket.scope)
        if detach is None:
            await session
        else:
            detach(session)

    async def _session(self, websocket: WebSocket) -> None:
        try:
            await Session(self, websocket).run()
        finally:
            self._sessions -= 1
            if not self._sessions:
                self._no_sessions.set()

    # -- hubs ------------------------------------------------------------------------------

    def _deliver(self, channel: str, event: bytes) -> None:
        hub = self._by_channel.get(channel)
        if hub is not None:
            hub.receive(event)
            return
        hub = self._by_direct.get(channel)
        if hub is not None:
            hub.receive_direct(event)

    def _reconnected(self) -> None:
        for hub in self.hubs.values():
            hub.fill_gap()

    async def join(self, room: str, connection: Connection) -> RoomHub:
        async with self._hub_lock:
            hub = self.hubs.get(room)
            if hub is None:
                config = HubConfig(
                    tick_s=self.config.tick_s,
                    lossy_per_tick=self.config.lossy_per_tick,
                    lossy_per_s=self.config.lossy_per_s,
                    max_tick_s=self.config.max_tick_s,
                    group_size=self.config.group_size,
                )
                hub = RoomHub(
                    room, config, self.log.read_since, self.log.position, self.shared.snapshots.get
                )
                keys = self.log.keys(room)
                await hub.start()
                self.hubs[room] = hub
                self._by_channel[keys.channel] = hub
                self._by_direct[keys.direct] = hub
                # Subscribed after the hub knows the log position: what is published before the
                # subscription takes effect shows up as a gap (next event, or the catch-up loop).
                await self.subscriber.subscribe(keys.channel, keys.direct)
            hub.add(connection)
            connection.on_stale = hub.resync_one  # a bound method: lighter than a closure
            metrics.CONNECTIONS.inc()
            if self.stopping:  # joined while the viewers were being closed
                connection.close(
                    CloseCode.SERVICE_RESTART, "server restarting: reconnect", drain=True
                )
            return hub

    async def leave(self, hub: RoomHub, connection: Connection) -> None:
        async with self._hub_lock:
            if connection in hub.connections:
                hub.discard(connection)
                metrics.CONNECTIONS.dec()
            if hub.connections or self.hubs.get(hub.room) is not hub:
                return
            keys = self.log.keys(hub.room)
            del self.hubs[hub.room]
            del self._by_channel[keys.channel]
            del self._by_direct[keys.direct]
            await self.subscriber.unsubscribe(keys.channel, keys.direct)
            await hub.stop()
        try:
            await self.presence.report(hub.room, 0)
        except Exception as exc:  # this process's report expires by itself
            log_failure(hub.room, "presence report on leaving failed", exc)

    def _sync_limits(self) -> tuple[int, int]:
        """(events a resume may replay, lossy events it keeps), as the config says now."""
        return self.config.replay_limit, self.config.lossy_per_tick

    # -- background work ---------------------------------------------------------------------

    async def report_presence(self) -> None:
        """Report each room's local viewer count; announce the room's total when it is due."""
        for room, hub in list(self.hubs.items()):
            try:
                tally = await self.presence.report(room, len(hub.connections))
                if tally.announce:
                    await self.rooms.announce_viewers(room, tally.total)
            except Exception as exc:  # tried again next interval; the other rooms go on
                log_failure(room, "presence report failed", exc)

    async def catch_up(self) -> None:
        """Backstop for a pub/sub message lost without a visible reconnect: compare each hub
        with its room's log and fill what the hub still lacks one interval later (an event in
        flight is not a gap), or at once when the log changed under it (new epoch, or a seq
        behind the hub's after Redis lost writes)."""
        seen = self._seen
        for room, hub in list(self.hubs.items()):
            try:
                epoch, seq = await self.log.position(room)
            except Exception as exc:  # tried again next interval; the other rooms go on
                log_failure(room, "catch-up read failed", exc)
                continue
            if epoch != hub.epoch or seq < hub.seq or hub.seq < seen.get(room, 0):
                hub.fill_gap()
            seen[room] = seq
        for room in [r for r in seen if r not in self.hubs]:
            del seen[room]
