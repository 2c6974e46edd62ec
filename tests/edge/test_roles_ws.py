"""Who may act over the WebSocket, against the real app: commands need a token of the room, and
nobody but the buyer confirms or cancels a hold (another room's token is refused with 403
`forbidden`, another user's with 404 `not_found`); a room closed to anonymous viewers, and a
token whose sub or name is not text, over HTTP and the WebSocket alike (the HTTP routes' table:
test_roles.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from edge_kit import (
    BUYER,
    ROOM_A,
    ROOM_B,
    Socket,
    Who,
    actor_token,
    assert_json_error,
    bearer,
    check,
    client,
    make_world,
    signed,
    token,
    ws_url,
)
from serve_kit import Served

from gateway.protocol import CloseCode
from live.settings import Settings
from rooms.actors import Role

__all__ = ["client"]  # the fixture, used by name


async def test_a_room_that_refuses_anonymous_viewers(
    client: httpx.AsyncClient, served: Served, settings: Settings
) -> None:
    await make_world(client, settings, holds=0)
    host = bearer(actor_token(settings, Who.HOST))
    body = {"title": "Closed", "settings": {"allow_anonymous": False}}
    await check(await client.put(f"/api/rooms/{ROOM_A}", json=body, headers=host), 200)
    for path in (f"/api/rooms/{ROOM_A}", f"/api/rooms/{ROOM_A}/products"):
        response = await client.get(path)
        assert response.status_code == 401
        assert assert_json_error(response)["error"] == "token_required"
        viewer = bearer(actor_token(settings, Who.OTHER_VIEWER))
        assert (await client.get(path, headers=viewer)).status_code == 200
    anonymous = await Socket.open(ws_url(served.url, ROOM_A), wait_welcome=False)
    assert await anonymous.ask({"type": "ping"}) is None  # the first message must be auth
    assert anonymous.close_code == CloseCode.UNAUTHORIZED
    signing_in = await Socket.open(ws_url(served.url, ROOM_A), wait_welcome=False)
    viewer_token = actor_token(settings, Who.OTHER_VIEWER)
    reply = await signing_in.ask({"type": "auth", "token": viewer_token, "ref": "a"})
    assert reply is not None and reply["type"] == "reply", reply
    assert await signing_in.next_frame(("welcome",)) is not None
    assert await signing_in.alive()
    await signing_in.close()


async def test_commands_need_a_token_of_the_room(
    client: httpx.AsyncClient, served: Served, settings: Settings
) -> None:
    world = await make_world(client, settings)
    sale_a = world.sales[ROOM_A]
    commands: list[dict[str, Any]] = [
        {"type": "comment", "text": "hi"},
        {"type": "buy", "sale_id": sale_a, "idempotency_key": "k"},
        {"type": "confirm", "reservation_id": world.holds[0], "payment_ref": "p"},
        {"type": "cancel", "reservation_id": world.holds[1]},
    ]
    anonymous = await Socket.open(ws_url(served.url, ROOM_A))
    for command in commands:
        answer = await anonymous.ask({**command, "ref": command["type"]})
        assert answer is not None and answer.get("error") == "token_required", answer
    # signing in with a token of another room is refused, and changes nothing
    other = actor_token(settings, Who.BUYER_ELSEWHERE)
    answer = await anonymous.ask({"type": "auth", "token": other})
    assert answer is not None and answer.get("error") == "forbidden", answer
    answer = await anonymous.ask(commands[0])
    assert answer is not None and answer.get("error") == "token_required", answer
    assert await anonymous.alive()
    await anonymous.close()
    # a token of another room cannot connect
    for who in (Who.BUYER_ELSEWHERE, Who.OTHER_HOST):
        refused = await Socket.open(
            ws_url(served.url, ROOM_A, token=str(actor_token(settings, who))), wait_welcome=False
        )
        assert await refused.next_frame(("welcome",)) is None
        assert refused.close_code == CloseCode.FORBIDDEN, who
    # with a token of the room they run
    viewer = await Socket.open(
        ws_url(served.url, ROOM_A, token=str(actor_token(settings, Who.OTHER_VIEWER)))
    )
    for command in commands[:2]:
        answer = await viewer.ask(command)
        assert answer is not None and answer["type"] == "reply", answer
    await viewer.close()


async def test_only_the_buyer_confirms_or_cancels_a_hold_over_the_websocket(
    client: httpx.AsyncClient, served: Served, settings: Settings
) -> None:
    """The issue's reproduction: a room-B token (here even the buyer's own user) confirmed and
    cancelled a room-A hold. Another room's token: forbidden; another user of the room:
    not_found; the holds stay the buyer's, who then confirms and cancels them."""
    world = await make_world(client, settings)
    confirm = {"type": "confirm", "reservation_id": world.holds[0], "payment_ref": "p"}
    cancel = {"type": "cancel", "reservation_id": world.holds[1]}
    buy_a = {"type": "buy", "sale_id": world.sales[ROOM_A], "idempotency_key": "b"}
    refusals = [
        (ROOM_B, token(settings, BUYER, Role.VIEWER, ROOM_B), "forbidden"),
        (ROOM_B, token(settings, "host-b", Role.HOST, ROOM_B), "forbidden"),
        (ROOM_A, token(settings, "viewer-2", Role.VIEWER, ROOM_A), "not_found"),
        (ROOM_A, token(settings, "mod-a", Role.MODERATOR, ROOM_A), "not_found"),
        (ROOM_A, token(settings, "host-a", Role.HOST, ROOM_A), "not_found"),
    ]
    for room, who, code in refusals:
        socket = await Socket.open(ws_url(served.url, room, token=who))
        for command in (confirm, cancel):
            answer = await socket.ask(command)
            assert answer is not None and answer["type"] == "error", (room, command, answer)
            assert answer.get("error") == code, (room, command, answer)
        if room == ROOM_B:  # nor buy in room A's sale from room B
            answer = await socket.ask(buy_a)
            assert answer is not None and answer.get("error") == "forbidden", answer
        await socket.close()
    figures = await check(
        await client.get(
            f"/api/sales/{world.sales[ROOM_A]}", headers=bearer(actor_token(settings, Who.HOST))
        ),
        200,
    )
    assert (figures["held"], figures["sold"]) == (3, 0), figures
    buyer = await Socket.open(
        ws_url(served.url, ROOM_A, token=token(settings, BUYER, Role.VIEWER, ROOM_A))
    )
    order = await buyer.ask(confirm)
    assert order is not None and order["type"] == "reply", order
    assert order["data"]["buyer"] == BUYER and order["data"]["reservation_id"] == world.holds[0]
    released = await buyer.ask(cancel)
    assert released is not None and released["type"] == "reply", released
    assert released["data"] == {"id": world.holds[1], "state": "released"}
    await buyer.close()


async def test_a_token_whose_sub_or_name_is_not_text_is_refused(
    client: httpx.AsyncClient, served: Served, settings: Settings
) -> None:
    await make_world(client, settings, holds=0)
    for claims in ({"sub": "odd", "name": "x\ud800"}, {"sub": "x\ud800"}):
        odd = signed(
            settings, {"role": "viewer", "room": ROOM_A, "exp": int(time.time()) + 600, **claims}
        )
        response = await client.post(
            f"/api/rooms/{ROOM_A}/comments", json={"text": "hi"}, headers=bearer(odd)
        )
        assert response.status_code == 401, (claims, response.status_code, response.text)
        socket = await Socket.open(ws_url(served.url, ROOM_A, token=odd), wait_welcome=False)
        assert await socket.next_frame(("welcome",)) is None
        assert socket.close_code == CloseCode.UNAUTHORIZED, claims
