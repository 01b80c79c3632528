"""Through the gateway with real tokens: a customer orders a verified provider's service, pays
(payments' event on the bus), gets the work with a revision and accepts it; an unpaid order is
cancelled by orders' timer.

identity, catalog, orders and the gateway run as in production, talking over HTTP and
RabbitMQ: orders prices the order from catalog's events only (its own read model), and learns
of the payment only from `payments.payment_succeeded`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from test_provider_journey import API, published_service, sign_up

from krika_common.events import Envelope, EventBus, PaymentSucceeded
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.storage import PDF


async def place_when_known(
    gateway: httpx.AsyncClient, customer: dict[str, str], body: dict[str, Any], key: str
) -> httpx.Response:
    """Place the order once orders has heard of the service (catalog's event is on its way)."""
    placed: list[httpx.Response] = []

    async def accepted() -> bool:
        answer = await gateway.post(
            f"{API}/orders", json=body, headers=customer | {"Idempotency-Key": key}
        )
        placed.append(answer)
        assert answer.status_code in (201, 422), answer.text
        return answer.status_code == 201

    await eventually(accepted, what="orders learning of the published service")
    return placed[-1]


def payment_for(order: dict[str, Any]) -> PaymentSucceeded:
    """What payments publishes once Paystack confirmed the charge."""
    return PaymentSucceeded(
        payment_id=uuid.uuid4(),
        order_id=uuid.UUID(order["id"]),
        customer_id=uuid.UUID(order["customer_id"]),
        reference=f"krk-{uuid.uuid4().hex[:12]}",
        amount=order["price"],
        currency=order["currency"],
        paid_at=datetime.now(UTC),
    )


async def test_an_order_from_placement_to_completion(
    gateway: httpx.AsyncClient,
    clean_db: AsyncEngine,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    service_id, provider, _ = await published_service(gateway, clean_db)
    page = (await gateway.get(f"{API}/catalog/services/{service_id}")).json()
    package = page["packages"][0]
    customer_id, customer = await sign_up(gateway, "customer")
    _, other_customer = await sign_up(gateway, "customer")
    body = {"service_id": service_id, "package_id": package["id"], "requirements": "June 14"}

    placed = await place_when_known(gateway, customer, body, key="order-1")
    order = placed.json()
    assert order["status"] == "pending"
    assert (order["customer_id"], order["provider_id"]) == (customer_id, page["provider_id"])
    assert (order["title"], order["price"], order["currency"]) == (
        page["title"],
        package["price"],
        "NGN",
    )
    assert (order["delivery_days"], order["revisions_allowed"], order["revisions_used"]) == (
        package["delivery_days"],
        package["revisions"],
        0,
    )
    order_path = f"{API}/orders/{order['id']}"

    # The same key again: the same order; with another body: refused.
    replay = await gateway.post(
        f"{API}/orders", json=body, headers=customer | {"Idempotency-Key": "order-1"}
    )
    assert replay.status_code == 201
    assert replay.json() == order
    assert replay.headers.get("Idempotent-Replayed") == "true"
    reused = await gateway.post(
        f"{API}/orders",
        json=body | {"requirements": "July"},
        headers=customer | {"Idempotency-Key": "order-1"},
    )
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    mine = await gateway.post(
        f"{API}/orders", json=body, headers=provider | {"Idempotency-Key": "own"}
    )
    assert mine.status_code == 403  # a provider account is no customer

    # Not paid yet: the provider cannot start.
    early = await gateway.post(f"{order_path}/start", headers=provider)
    assert (early.status_code, early.json()["error"]) == (409, "invalid_transition")

    # payments says it is paid - twice, as a redelivery would.
    payments = event_bus_factory("payments")
    await payments.connect()
    paid = Envelope.wrap(payment_for(order), producer="payments")
    await payments.publish(paid)
    await payments.publish(paid)

    async def is_paid() -> bool:
        return bool((await gateway.get(order_path, headers=customer)).json()["status"] == "paid")

    await eventually(is_paid, what="the payment reaching the order")

    started = await gateway.post(f"{order_path}/start", headers=provider)
    assert started.status_code == 200, started.text
    upload = await gateway.post(
        f"{order_path}/attachments",
        files={"file": ("album.pdf", PDF, "application/pdf")},
        headers=provider,
    )
    assert upload.status_code == 201, upload.text
    first = await gateway.post(
        f"{order_path}/deliver",
        json={"message": "The album", "attachment_ids": [upload.json()["id"]]},
        headers=provider,
    )
    assert first.status_code == 200, first.text
    revision = await gateway.post(
        f"{order_path}/request-revision", json={"note": "Warmer colours"}, headers=customer
    )
    assert revision.status_code == 200, revision.text
    assert revision.json()["revisions_used"] == 1
    second = await gateway.post(
        f"{order_path}/deliver", json={"message": "Warmer", "attachment_ids": []}, headers=provider
    )
    assert second.status_code == 200, second.text
    done = await gateway.post(f"{order_path}/complete", headers=customer)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"

    history = (await gateway.get(f"{order_path}/history", headers=provider)).json()["items"]
    assert [(h["from_status"], h["to_status"], h["actor_role"]) for h in history] == [
        (None, "pending", "customer"),
        ("pending", "paid", "system"),  # once, though delivered twice
        ("paid", "in_progress", "provider"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "in_progress", "customer"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "completed", "customer"),
    ]
    assert history[4]["note"] == "Warmer colours"

    deliveries = (await gateway.get(f"{order_path}/deliveries", headers=customer)).json()
    (attachment,) = deliveries["items"][0]["attachments"]
    link = urlsplit(attachment["url"])
    assert link.path.startswith(f"{API}/orders/files/")
    opened = await gateway.get(f"{link.path}?{link.query}")  # a public route: the link is enough
    assert opened.status_code == 200
    assert opened.content == PDF
    forged = await gateway.get(f"{link.path}?expires=1&sig=x")
    assert forged.status_code == 403

    # Someone else's order: as if it did not exist.
    for method, path in (
        ("GET", order_path),
        ("GET", f"{order_path}/history"),
        ("GET", f"{order_path}/deliveries"),
        ("POST", f"{order_path}/cancel"),
    ):
        answer = await gateway.request(
            method, path, headers=other_customer, json={} if method == "POST" else None
        )
        assert answer.status_code == 404, (path, answer.text)
    listed = (await gateway.get(f"{API}/orders", headers=other_customer)).json()["items"]
    assert listed == []
    as_provider = await gateway.get(f"{API}/orders", params={"as": "provider"}, headers=provider)
    assert [o["id"] for o in as_provider.json()["items"]] == [order["id"]]

    # What the other services heard.
    def heard() -> bool:
        return len(events_observer.envelopes("orders.order_completed")) == 1

    await eventually(heard, what="orders' events on the bus")
    (placed_event,) = events_observer.envelopes("orders.order_placed")
    assert placed_event.data["order_id"] == order["id"]
    assert placed_event.data["price"] == package["price"]
    changes = [
        (e.data["from_status"], e.data["to_status"])
        for e in events_observer.envelopes("orders.order_status_changed")
    ]
    assert changes == [(h["from_status"], h["to_status"]) for h in history[1:]]
    (completed,) = events_observer.envelopes("orders.order_completed")
    assert completed.data["customer_id"] == customer_id
    assert events_observer.envelopes("orders.order_cancelled") == []


@pytest.mark.orders_settings(unpaid_timeout=1.0)
async def test_an_unpaid_order_is_cancelled_by_the_timer(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine, events_observer: EventsObserver
) -> None:
    service_id, _, _ = await published_service(gateway, clean_db)
    page = (await gateway.get(f"{API}/catalog/services/{service_id}")).json()
    _, customer = await sign_up(gateway, "customer")
    body = {"service_id": service_id, "package_id": page["packages"][0]["id"]}
    order = (await place_when_known(gateway, customer, body, key=uuid.uuid4().hex)).json()
    order_path = f"{API}/orders/{order['id']}"

    async def cancelled() -> bool:
        status = (await gateway.get(order_path, headers=customer)).json()["status"]
        return bool(status == "cancelled")

    await eventually(cancelled, within=10, what="the unpaid order expiring")
    history = (await gateway.get(f"{order_path}/history", headers=customer)).json()["items"]
    assert [(h["from_status"], h["to_status"], h["actor_role"]) for h in history] == [
        (None, "pending", "customer"),
        ("pending", "cancelled", "system"),
    ]

    def heard() -> bool:
        return len(events_observer.envelopes("orders.order_cancelled")) == 1

    await eventually(heard, what="order_cancelled on the bus")
    (event,) = events_observer.envelopes("orders.order_cancelled")
    assert (event.data["order_id"], event.data["paid"], event.data["cancelled_by"]) == (
        order["id"],
        False,
        "system",
    )
