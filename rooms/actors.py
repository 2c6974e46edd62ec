"""Who acts on a room, and what each role may do there.

An `Actor` is the domain's view of a caller: the user, their role in the room and the room their
credentials are for (the edge makes it from a verified token). The rules:

- watch: anyone allowed to watch the room (anonymous viewers where the room allows them);
- comment, and buy (reserve, confirm and cancel one's own holds): any signed-in user of the room;
- pin, post a host message, add a product, moderate (delete comments, mute, slow mode) and read
  a sale's live figures: a host or a moderator of the room;
- create or change the room, end the stream, create, start and stop flash sales: a host.

Any host credential of the room is a host (co-hosts share a stream; the platform that signs the
credentials decides who hosts), and credentials act only on the room they were issued for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rooms.errors import Forbidden


class Role(StrEnum):
    HOST = "host"
    MODERATOR = "moderator"
    VIEWER = "viewer"


class Action(StrEnum):
    COMMENT = "comment"
    BUY = "buy"
    PIN = "pin"
    MESSAGE = "message"
    ADD_PRODUCT = "add_product"
    MODERATE = "moderate"
    READ_FIGURES = "read_figures"
    MANAGE_ROOM = "manage_room"
    END_STREAM = "end_stream"
    MANAGE_SALES = "manage_sales"


_EVERYONE = frozenset(Role)
_STAFF = frozenset({Role.HOST, Role.MODERATOR})
_HOST = frozenset({Role.HOST})
ALLOWED: dict[Action, frozenset[Role]] = {
    Action.COMMENT: _EVERYONE,
    Action.BUY: _EVERYONE,
    Action.PIN: _STAFF,
    Action.MESSAGE: _STAFF,
    Action.ADD_PRODUCT: _STAFF,
    Action.MODERATE: _STAFF,
    Action.READ_FIGURES: _STAFF,
    Action.MANAGE_ROOM: _HOST,
    Action.END_STREAM: _HOST,
    Action.MANAGE_SALES: _HOST,
}


@dataclass(frozen=True)
class Actor:
    user: str
    role: Role
    room: str  # the room the actor's credentials are for
    name: str = ""

    @property
    def display_name(self) -> str:
        return self.name or self.user


def authorize(actor: Actor, room: str, action: Action) -> None:
    """Forbidden unless `actor` may do `action` in `room`."""
    if actor.room != room:
        raise Forbidden("forbidden", "this token is for another room")
    allowed = ALLOWED[action]
    if actor.role not in allowed:
        who = "a host" if allowed == _HOST else "a host or a moderator"
        raise Forbidden(
            "forbidden", f"only {who} of this room may {action.value.replace('_', ' ')}"
        )
