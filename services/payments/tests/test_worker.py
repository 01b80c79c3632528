"""The worker as it runs: orders' event from the bus makes a payable, the payment's webhook is
lost, the worker's own follow-up loop finds the payment, and its relay publishes
payments.payment_succeeded on the bus."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from krika_common.events import Envelope, EventBus, OrderPlaced, UserRegistered
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client
from payments.config import Settings
from payments.worker import create_worker_app

from .factories import Market, now


async def test_worker_consumes_follows_up_and_relays(
    market: Market,
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    events_observer: EventsObserver,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
) -> None:
    worker = create_worker_app(
        settings.model_copy(update={"amqp_url": amqp_url, "events_exchange": events_exchange}),
        make_bus=lambda queue: event_bus_factory("payments", queue=f"{queue}.test.{run_id}"),
    )
    orders = event_bus_factory("orders")
    order_id = uuid.uuid4()
    async with app_client(worker) as ops:

        async def consuming() -> bool:
            return (await ops.get("/readyz")).status_code == 200

        await eventually(consuming, within=10, what="worker consuming")
        await orders.connect()
        for event in (
            UserRegistered(
                user_id=market.customer.id,
                email="buyer@example.com",
                full_name="Bo Buyer",
                roles=["customer"],
            ),
            OrderPlaced(
                order_id=order_id,
                service_id=uuid.uuid4(),
                package_id=uuid.uuid4(),
                customer_id=market.customer.id,
                provider_id=market.provider.id,
                title="Website audit",
                price=250_000,
                currency="NGN",
                placed_at=now(),
            ),
        ):
            await orders.publish(Envelope.wrap(event, producer="identity"))

        async def checked_out() -> bool:
            return (await market.checkout(order_id)).status_code == 201

        await eventually(checked_out, within=10, what="the payable from orders' event")
        body = (await market.checkout(order_id)).json()
        await market.sandbox.rule(
            kind="webhook", event="charge.success", reference=body["reference"], delivery="never"
        )
        await market.sandbox.pay(body["authorization_url"])
        await eventually(
            lambda: events_observer.envelopes("payments.payment_succeeded"),
            within=15,
            what="reconciled by the worker's loop and published by its relay",
        )

    [published] = events_observer.envelopes("payments.payment_succeeded")
    assert published.data["order_id"] == str(order_id)
    assert published.data["amount"] == 250_000
