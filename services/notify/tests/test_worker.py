"""The worker as it runs: events from the bus become e-mails at the SMTP peer and in-app
notifications, each announced as notify.notification_created for chat to push."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import Envelope, EventBus
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client
from krika_common.testing.smtp import CaptureServer
from notify.config import Settings
from notify.worker import create_worker_app

from .factories import Market


async def test_events_from_the_bus_become_mails_and_pushed_notifications(
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
    events_observer: EventsObserver,
    smtp: CaptureServer,
    clean_db: AsyncEngine,
) -> None:
    worker = create_worker_app(
        settings.model_copy(update={"amqp_url": amqp_url, "events_exchange": events_exchange}),
        make_bus=lambda queue: event_bus_factory("notify", queue=f"{queue}.test.{run_id}"),
    )
    producer = event_bus_factory("producers")
    market = Market()
    async with app_client(worker) as ops:

        async def consuming() -> bool:
            return (await ops.get("/readyz")).status_code == 200

        await eventually(consuming, within=10, what="worker consuming")
        await producer.connect()
        for event in (market.customer.registered(), market.provider.registered(), market.placed()):
            await producer.publish(Envelope.wrap(event, producer="test"))
        await producer.publish(Envelope.wrap(market.paid(), producer="payments"))

        def arrived() -> bool:
            kinds = [str(m.message["X-Krika-Kind"]) for m in smtp.messages]
            return kinds.count("order_paid") == 2 and kinds.count("welcome") == 2

        await eventually(arrived, within=15, what="the mails")
        await eventually(
            lambda: len(events_observer.envelopes("notify.notification_created")) >= 5,
            within=10,
            what="notification_created events",
        )
    created = events_observer.envelopes("notify.notification_created")
    kinds = sorted(e.data["kind"] for e in created)
    assert kinds == ["order_paid", "order_paid", "order_placed", "welcome", "welcome"]
    paid = [e.data for e in created if e.data["kind"] == "order_paid"]
    assert {p["user_id"] for p in paid} == {str(market.customer.id), str(market.provider.id)}
    assert all(p["title"] and p["body"] for p in paid)
