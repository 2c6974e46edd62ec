"""What the HTTP routes of a room's auctions, group deals and share links share: their domain
service (built by the app's lifespan, hence read through a callable), the room service that says
who may watch a room, and the authenticator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from gateway.auth import Authenticator
from rooms.actors import Actor
from rooms.service import RoomService

S = TypeVar("S")


class WatchedRoutes(Generic[S]):
    def __init__(
        self,
        service: Callable[[], S],
        rooms: Callable[[], RoomService],
        auth: Authenticator,
    ) -> None:
        self._service = service
        self._rooms = rooms
        self.auth = auth

    @property
    def service(self) -> S:
        return self._service()

    async def may_watch(self, room: str, actor: Actor | None) -> None:
        """Anyone allowed to watch the room may see it (RoomService.may_watch)."""
        await self._rooms().may_watch(room, actor)
