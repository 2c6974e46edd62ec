"""Who acts on a room, and what each role may do there.

An `Actor` is the domain's view of a caller: the user, their role in the room and the room their
credentials are for (the edge makes it from a verified token). The rules:

- watch: anyone allowed to watch the room (anonymous viewers where the room allows them);
- comment, and buy (reserve, confirm and cancel one's own holds): any signed-in user of the room;
- bid in an auction: a viewer of the room (never its hosts or moderators: that would be shill
  bidding);
- pin, post a host message, add a product, moderate (delete comments, mute, slow mode) and read
  a sale's live figures: a host or a moderator of the room;
- create or change the room, end the stream, create, start and stop flash sales, and manage
  the room's webhooks: a host;
- change a running sale's stock: a host, or a `service` (a merchant's server: its order
  management system);
- confirm a buyer's hold on the buyer's behalf (a payment provider's callback): a `service`.
A service acts on nothing else: it neither comments nor buys, and watches only as anyone may.

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
    SERVICE = "service"  # server to server: stock changes and payment confirmations


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
    MANAGE_WEBHOOKS = "manage_webhooks"
    CHANGE_STOCK = "change_stock"
    CONFIRM_FOR_BUYER = "confirm_for_buyer"
    BID = "bid"


_PEOPLE = frozenset({Role.HOST, Role.MODERATOR, Role.VIEWER})
_STAFF = frozenset({Role.HOST, Role.MODERATOR})
_HOST = frozenset({Role.HOST})
ALLOWED: dict[Action, frozenset[Role]] = {
    Action.COMMENT: _PEOPLE,
    Action.BUY: _PEOPLE,
    Action.PIN: _STAFF,
    Action.MESSAGE: _STAFF,
    Action.ADD_PRODUCT: _STAFF,
    Action.MODERATE: _STAFF,
    Action.READ_FIGURES: _STAFF,
    Action.MANAGE_ROOM: _HOST,
    Action.END_STREAM: _HOST,
    Action.MANAGE_SALES: _HOST,
    Action.MANAGE_WEBHOOKS: _HOST,
    Action.CHANGE_STOCK: frozenset({Role.HOST, Role.SERVICE}),
    Action.CONFIRM_FOR_BUYER: frozenset({Role.SERVICE}),
    Action.BID: frozenset({Role.VIEWER}),
}
_WHO = {_HOST: "a host", _STAFF: "a host or a moderator", _PEOPLE: "a signed-in person"}


@dataclass(frozen=True)
class Actor:
    user: str
    role: Role
    room: str  # the room the actor's credentials are for
    name: str = ""

    @property
    def display_name(self) -> str:
        return self.name or self.user

    @property
    def service(self) -> bool:
        """A merchant's server, acting for buyers rather than as one."""
        return self.role is Role.SERVICE


def authorize(actor: Actor, room: str, action: Action) -> None:
    """Forbidden unless `actor` may do `action` in `room`."""
    if actor.room != room:
        raise Forbidden("forbidden", "this token is for another room")
    allowed = ALLOWED[action]
    if actor.role not in allowed:
        who = _WHO.get(allowed) or " or ".join(f"a {role.value}" for role in sorted(allowed))
        raise Forbidden(
            "forbidden", f"only {who} of this room may {action.value.replace('_', ' ')}"
        )
