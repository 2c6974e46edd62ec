"""The room, product and sale a simulation runs against, made through the public HTTP API."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from loadtest.api import Api, Response, TransportError


class SetupError(RuntimeError):
    """The service refused or failed a setup call; the message says which and why."""


@dataclass(frozen=True)
class Scenario:
    room: str
    product: int
    sale: int


def new_room_id() -> str:
    return f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _expect(response: Response, what: str) -> dict[str, Any]:
    if not response.ok:
        raise SetupError(f"{what}: {response.describe()}")
    return response.body


def create(
    api: Api,
    room: str,
    *,
    stock: int,
    limit: int,
    hold_seconds: int,
    price_cents: int,
) -> Scenario:
    """Create the room (PUT), a product and a scheduled sale of it. `api` carries a host token
    for `room`."""
    try:
        _expect(api.request("PUT", f"/api/rooms/{room}", {"title": "Flash sale load test"}), "room")
        product = _expect(
            api.post(
                f"/api/rooms/{room}/products",
                {"title": "Load test sneakers", "price_cents": price_cents, "sku": "LT-1"},
            ),
            "product",
        )
        sale = _expect(
            api.post(
                f"/api/rooms/{room}/sales",
                {
                    "product_id": product["id"],
                    "stock": stock,
                    "price_cents": price_cents,
                    "limit_per_buyer": limit,
                    "hold_seconds": hold_seconds,
                },
            ),
            "sale",
        )
    except TransportError as exc:
        raise SetupError(f"the service does not answer: {exc}") from None
    return Scenario(room, int(product["id"]), int(sale["id"]))


def figures(api: Api, sale: int) -> dict[str, Any]:
    """The sale's live figures (host token): stock, remaining, held, confirming, sold, ..."""
    return _expect(api.get(f"/api/sales/{sale}"), "sale figures")
