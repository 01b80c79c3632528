"""Placing an order (snapshot, refusals, Idempotency-Key) and reading orders."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import ServiceArchived, ServiceUpdated

from .factories import Actor, Market, outbox_envelopes, outbox_types

CONTRACT = {
    "id",
    "status",
    "service_id",
    "package_id",
    "customer_id",
    "provider_id",
    "title",
    "price",
    "currency",
    "delivery_days",
    "revisions_allowed",
    "revisions_used",
    "created_at",
    "due_at",
}


async def test_placing_snapshots_the_package_and_records_the_placement(
    market: Market, clean_db: AsyncEngine
) -> None:
    placed = await market.place(package=1)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert set(order) >= CONTRACT
    package = market.packages[1]
    assert order["status"] == "pending"
    assert order["service_id"] == str(market.service_id)
    assert order["package_id"] == str(package.id)
    assert order["customer_id"] == str(market.customer.id)
    assert order["provider_id"] == str(market.provider.id)
    assert order["title"] == "Wedding photography"
    assert order["package_name"] == package.name
    assert (order["price"], order["currency"]) == (package.price, "NGN")
    assert order["delivery_days"] == package.delivery_days
    assert (order["revisions_allowed"], order["revisions_used"]) == (package.revisions, 0)
    assert order["requirements"] == "Ceremony at 2pm"
    created = datetime.fromisoformat(order["created_at"])
    assert datetime.fromisoformat(order["due_at"]) - created == timedelta(
        days=package.delivery_days
    )

    # A later catalog change does not move the order.
    market.packages[1] = package.model_copy(update={"price": 1})
    await market.publish(ServiceUpdated, title="Renamed")
    again = await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
    assert again.json()["price"] == package.price
    assert again.json()["title"] == "Wedding photography"

    assert await outbox_types(clean_db) == ["orders.order_placed"]
    (event,) = await outbox_envelopes(clean_db, "orders.order_placed")
    assert event["data"]["order_id"] == order["id"]
    assert event["data"]["price"] == package.price
    (first,) = await market.history(order)
    assert first["from_status"] is None
    assert first["to_status"] == "pending"
    assert first["actor_id"] == str(market.customer.id)
    assert first["actor_role"] == "customer"


async def test_refusals(market: Market, provider: Actor, admin: Actor) -> None:
    # Unknown service, unknown package.
    body = market.body() | {"service_id": str(uuid.uuid4())}
    headers = market.customer.headers | {"Idempotency-Key": "k1"}
    unknown = await market.client.post("/orders", json=body, headers=headers)
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_service")
    body = market.body() | {"package_id": str(uuid.uuid4())}
    headers = market.customer.headers | {"Idempotency-Key": "k2"}
    no_package = await market.client.post("/orders", json=body, headers=headers)
    assert (no_package.status_code, no_package.json()["error"]) == (422, "unknown_package")

    # One's own service (a provider who is also a customer).
    mine = await market.place(who=Actor(market.mint, "customer", "provider", user_id=provider.id))
    assert (mine.status_code, mine.json()["error"]) == (403, "own_service")

    # Only customers place orders.
    as_provider = await market.place(who=market.provider)
    assert as_provider.status_code == 403
    as_admin = await market.place(who=admin)
    assert as_admin.status_code == 403

    # Missing or malformed key.
    missing = await market.client.post(
        "/orders", json=market.body(), headers=market.customer.headers
    )
    assert (missing.status_code, missing.json()["error"]) == (400, "idempotency_key_missing")
    bad = await market.client.post(
        "/orders", json=market.body(), headers=market.customer.headers | {"Idempotency-Key": ""}
    )
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_idempotency_key")

    # Paused, then archived: no new orders.
    await market.publish(ServiceUpdated, status="paused")
    paused = await market.place()
    assert (paused.status_code, paused.json()["error"]) == (409, "service_unavailable")
    await market.publish(ServiceUpdated, status="published")
    assert (await market.place()).status_code == 201
    await market.publish(ServiceArchived, status="archived")
    archived = await market.place()
    assert (archived.status_code, archived.json()["error"]) == (409, "service_unavailable")


async def test_the_read_model_keeps_the_newest_revision(market: Market) -> None:
    await market.publish(ServiceUpdated, status="paused")  # revision 2
    # revision 1 again, arriving late: ignored.
    market.revision = 0
    await market.publish(ServiceUpdated, status="published")
    late = await market.place()
    assert (late.status_code, late.json()["error"]) == (409, "service_unavailable")


async def test_an_unknown_service_then_published_late(market: Market) -> None:
    """A service's first event may be an update (published event lost/late): it counts."""
    market.service_id = uuid.uuid4()
    market.revision = 4
    await market.publish(ServiceUpdated)
    assert (await market.place()).status_code == 201


async def test_a_replay_answers_the_same_order(market: Market, clean_db: AsyncEngine) -> None:
    first = await market.place(key="same-key")
    again = await market.place(key="same-key")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await outbox_types(clean_db) == ["orders.order_placed"]

    other_body = market.body(package=1)
    headers = market.customer.headers | {"Idempotency-Key": "same-key"}
    reused = await market.client.post("/orders", json=other_body, headers=headers)
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")

    # The key is the customer's own: another customer's same key is another order.
    other = Actor(market.mint, "customer")
    theirs = await market.place(who=other, key="same-key")
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]


async def test_concurrent_requests_with_one_key_place_one_order(
    market: Market, clean_db: AsyncEngine
) -> None:
    answers = await asyncio.gather(*(market.place(key="racing") for _ in range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"] == "request_in_progress"
    assert await outbox_types(clean_db) == ["orders.order_placed"]


async def test_reading_orders(market: Market, stranger: Actor, admin: Actor) -> None:
    first = await market.order()
    second = await market.order(package=1)
    customer, provider = market.customer, market.provider

    for who in (customer, provider, admin):
        got = await market.client.get(f"/orders/{first['id']}", headers=who.headers)
        assert got.status_code == 200, got.text
        assert got.json()["id"] == first["id"]
    for path in ("", "/history", "/deliveries"):
        hidden = await market.client.get(f"/orders/{first['id']}{path}", headers=stranger.headers)
        assert (hidden.status_code, hidden.json()["error"]) == (404, "order_not_found")
    missing = await market.client.get(f"/orders/{uuid.uuid4()}", headers=customer.headers)
    assert missing.status_code == 404

    async def ids(who: Actor, **params: str | int) -> list[str]:
        got = await market.client.get("/orders", params=params, headers=who.headers)
        assert got.status_code == 200, got.text
        return [o["id"] for o in got.json()["items"]]

    newest_first = [second["id"], first["id"]]
    assert await ids(customer) == newest_first
    assert await ids(customer, **{"as": "customer"}) == newest_first
    assert await ids(customer, **{"as": "provider"}) == []
    assert await ids(provider, **{"as": "provider"}) == newest_first
    assert await ids(stranger) == []
    assert await ids(admin) == newest_first
    assert await ids(customer, status="pending") == newest_first
    assert await ids(customer, status="paid") == []

    page = await market.client.get("/orders", params={"limit": 1}, headers=customer.headers)
    assert [o["id"] for o in page.json()["items"]] == [second["id"]]
    cursor = page.json()["next_cursor"]
    assert cursor
    rest = await market.client.get(
        "/orders", params={"limit": 1, "cursor": cursor}, headers=customer.headers
    )
    assert [o["id"] for o in rest.json()["items"]] == [first["id"]]
    assert rest.json()["next_cursor"] is None
    bad = await market.client.get("/orders", params={"cursor": "x"}, headers=customer.headers)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_cursor")
    bad_status = await market.client.get(
        "/orders", params={"status": "lost"}, headers=customer.headers
    )
    assert bad_status.status_code == 422


async def test_anonymous_is_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/orders")).status_code == 401
    assert (await client.post("/orders", json={})).status_code == 401
