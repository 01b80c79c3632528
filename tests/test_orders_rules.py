"""Orders' rules through the gateway with real tokens: who may do what in which state, races,
concurrent replays of one Idempotency-Key, a payment that arrives after the order was
cancelled, and the auto-completion timer with two timer loops running (as two workers would).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from test_orders_journey import payment_for, place_when_known
from test_provider_journey import API, published_service, sign_up

from krika_common.events import Envelope, EventBus
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver

Headers = dict[str, str]


async def an_order(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> tuple[dict[str, Any], Headers, Headers, Headers, Headers]:
    """A pending order: (order, customer, provider, admin, another customer)."""
    service_id, provider, admin = await published_service(gateway, clean_db)
    page = (await gateway.get(f"{API}/catalog/services/{service_id}")).json()
    _, customer = await sign_up(gateway, "customer")
    _, stranger = await sign_up(gateway, "customer")
    body = {"service_id": service_id, "package_id": page["packages"][0]["id"]}
    order = (await place_when_known(gateway, customer, body, key=uuid.uuid4().hex)).json()
    return order, customer, provider, admin, stranger


async def pay(
    gateway: httpx.AsyncClient,
    bus_factory: Callable[..., EventBus],
    order: dict[str, Any],
    customer: Headers,
) -> None:
    payments = bus_factory("payments")
    await payments.connect()
    await payments.publish(Envelope.wrap(payment_for(order), producer="payments"))

    async def paid() -> bool:
        answer = await gateway.get(f"{API}/orders/{order['id']}", headers=customer)
        return bool(answer.json()["paid_at"] is not None)

    await eventually(paid, what="the payment reaching the order")


async def act(
    gateway: httpx.AsyncClient, order: dict[str, Any], action: str, who: Headers
) -> httpx.Response:
    bodies = {
        "deliver": {"message": "Here it is", "attachment_ids": []},
        "request-revision": {"note": "Again"},
        "cancel": {"reason": "Changed my mind"},
    }
    return await gateway.post(
        f"{API}/orders/{order['id']}/{action}", json=bodies.get(action), headers=who
    )


async def test_each_action_only_by_its_actor_in_its_state(
    gateway: httpx.AsyncClient,
    clean_db: AsyncEngine,
    event_bus_factory: Callable[..., EventBus],
) -> None:
    order, customer, provider, admin, stranger = await an_order(gateway, clean_db)
    actions = ("start", "deliver", "request-revision", "complete")

    def refused(answer: httpx.Response, status: int = 409) -> bool:
        code = "invalid_transition" if status == 409 else "order_not_found"
        return answer.status_code == status and answer.json()["error"] == code

    # pending: nothing but payment (and cancellation) moves it.
    for action in actions:
        for who in (customer, provider, admin):
            assert refused(await act(gateway, order, action, who)), (action, "pending")
        assert refused(await act(gateway, order, action, stranger), 404)
    await pay(gateway, event_bus_factory, order, customer)

    # paid: only the provider starts.
    assert refused(await act(gateway, order, "start", customer))
    assert refused(await act(gateway, order, "deliver", provider))
    assert (await act(gateway, order, "start", provider)).status_code == 200
    # in progress: only the provider delivers; nobody but an admin cancels now.
    assert refused(await act(gateway, order, "deliver", customer))
    assert refused(await act(gateway, order, "cancel", customer))
    assert refused(await act(gateway, order, "cancel", provider))
    assert refused(await act(gateway, order, "complete", customer))
    assert (await act(gateway, order, "deliver", provider)).status_code == 200
    # delivered: only the customer asks for a revision or completes.
    for action in ("request-revision", "complete"):
        assert refused(await act(gateway, order, action, provider)), action
        assert refused(await act(gateway, order, action, stranger), 404), action
    revised = await act(gateway, order, "request-revision", customer)
    assert revised.status_code == 200
    assert (await act(gateway, order, "deliver", provider)).status_code == 200
    # The package allows one revision: the second request is refused.
    assert order["revisions_allowed"] == 1
    assert refused(await act(gateway, order, "request-revision", customer))
    assert (await act(gateway, order, "complete", customer)).status_code == 200
    # completed is final, for everyone.
    for action in (*actions, "cancel"):
        for who in (customer, provider, admin):
            assert refused(await act(gateway, order, action, who)), (action, "completed")


async def test_two_racing_transitions_one_wins(
    gateway: httpx.AsyncClient,
    clean_db: AsyncEngine,
    event_bus_factory: Callable[..., EventBus],
) -> None:
    order, customer, provider, _, _ = await an_order(gateway, clean_db)
    await pay(gateway, event_bus_factory, order, customer)
    # The provider starts while the customer cancels: paid allows both, only one can happen.
    answers = await asyncio.gather(
        act(gateway, order, "start", provider), act(gateway, order, "cancel", customer)
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    history = (await gateway.get(f"{API}/orders/{order['id']}/history", headers=customer)).json()
    moves = [h for h in history["items"] if h["from_status"] == "paid"]
    assert len(moves) == 1


async def test_concurrent_replays_of_one_key_place_one_order(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    service_id, _, _ = await published_service(gateway, clean_db)
    page = (await gateway.get(f"{API}/catalog/services/{service_id}")).json()
    _, customer = await sign_up(gateway, "customer")
    body = {"service_id": service_id, "package_id": page["packages"][0]["id"]}
    first = await place_when_known(gateway, customer, body, key="warm-up")
    assert first.status_code == 201

    headers = customer | {"Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(gateway.post(f"{API}/orders", json=body, headers=headers) for _ in range(6))
    )
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    assert 201 in statuses
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"] == "request_in_progress"
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1  # every 201 is the same order
    again = await gateway.post(f"{API}/orders", json=body, headers=headers)
    assert again.json()["id"] in created
    assert again.headers["Idempotent-Replayed"] == "true"
    mine = (await gateway.get(f"{API}/orders", headers=customer)).json()["items"]
    assert len(mine) == 2  # the warm-up order and this one


async def test_a_payment_after_cancellation_asks_for_the_money_back(
    gateway: httpx.AsyncClient,
    clean_db: AsyncEngine,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    order, customer, _, _, _ = await an_order(gateway, clean_db)
    cancelled = await act(gateway, order, "cancel", customer)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"

    payments = event_bus_factory("payments")
    await payments.connect()
    late = Envelope.wrap(payment_for(order), producer="payments")
    await payments.publish(late)
    await payments.publish(late)  # redelivered: still one refund request

    def refund_requested() -> bool:
        found = events_observer.envelopes("orders.order_cancelled")
        return any(e.data["paid"] for e in found)

    await eventually(refund_requested, what="order_cancelled with paid: true")
    await asyncio.sleep(0.5)  # let the duplicate be handled too
    cancellations = events_observer.envelopes("orders.order_cancelled")
    assert [e.data["paid"] for e in cancellations] == [False, True]
    assert cancellations[1].data["price"] == order["price"]
    status = (await gateway.get(f"{API}/orders/{order['id']}", headers=customer)).json()
    assert status["status"] == "cancelled"  # the late payment does not revive it


@pytest.mark.orders_settings(auto_complete_after=1.0)
async def test_a_delivered_order_completes_by_itself_once(
    gateway: httpx.AsyncClient,
    clean_db: AsyncEngine,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    order, customer, provider, _, _ = await an_order(gateway, clean_db)
    await pay(gateway, event_bus_factory, order, customer)
    assert (await act(gateway, order, "start", provider)).status_code == 200
    assert (await act(gateway, order, "deliver", provider)).status_code == 200

    def completed() -> bool:
        return len(events_observer.envelopes("orders.order_completed")) >= 1

    await eventually(completed, within=10, what="the delivered order completing by itself")
    await asyncio.sleep(0.5)  # two timer loops run: give a second firing the chance to show
    assert len(events_observer.envelopes("orders.order_completed")) == 1
    history = (await gateway.get(f"{API}/orders/{order['id']}/history", headers=customer)).json()
    last = history["items"][-1]
    assert (last["from_status"], last["to_status"], last["actor_role"]) == (
        "delivered",
        "completed",
        "system",
    )
    assert [h["to_status"] for h in history["items"]].count("completed") == 1
