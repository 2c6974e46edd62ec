"""Redis key names of a room. All share the hash tag `{room:<id>}`, so one script sees them all
on one Redis Cluster slot."""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class RoomKeys:
    prefix: str
    room: str

    def _key(self, suffix: str) -> str:
        return f"{self.prefix}{{room:{self.room}}}:{suffix}"

    @property
    def seq(self) -> str:
        return self._key("seq")

    @property
    def epoch(self) -> str:
        return self._key("epoch")

    @property
    def log(self) -> str:
        return self._key("log")

    @property
    def state(self) -> str:
        return self._key("state")

    @property
    def recent_comments(self) -> str:
        return self._key("comments")

    @property
    def published_ids(self) -> str:
        """Sorted set: recent event ids -> seq, so a replayed publish returns its first answer."""
        return self._key("published")

    @property
    def channel(self) -> str:
        return self._key("events")

    @property
    def direct(self) -> str:
        """Pub/sub only: messages for one user's connections in the room (`{"to", "type",
        "data"}`), never logged; the room's hash tag keeps them on the room's shard."""
        return self._key("events:direct")

    @property
    def presence(self) -> str:
        return self._key("presence")

    @property
    def muted(self) -> str:
        return self._key("muted")

    @property
    def live(self) -> tuple[str, ...]:
        """Every room-wide key (the per-user keys expire by themselves)."""
        return (
            self.seq,
            self.epoch,
            self.log,
            self.state,
            self.recent_comments,
            self.published_ids,
            self.presence,
            self.muted,
        )

    def user(self, kind: str, user: str) -> str:
        """A per-user key of this room (rate limit window, slow-mode stamp)."""
        return self._key(f"{kind}:{user}")
