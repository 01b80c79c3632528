from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from catalog.worker import create_worker_app
from krika_common.access import mark_key
from krika_common.events import Envelope, EventBus
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client

from .factories import Actor, create_service, kyc_approved, suspended


async def test_worker_relays_the_outbox_and_feeds_the_read_model_from_the_bus(
    client: httpx.AsyncClient,
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    events_observer: EventsObserver,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
    clean_db: AsyncEngine,
    redis_client: Redis,
    mint_token: Any,
    category: dict[str, Any],
) -> None:
    newcomer = Actor(mint_token, "provider")
    service = await create_service(client, newcomer.headers, category["id"])
    worker = create_worker_app(
        settings.model_copy(update={"amqp_url": amqp_url, "events_exchange": events_exchange}),
        make_bus=lambda queue: event_bus_factory("catalog", queue=f"{queue}.test.{run_id}"),
    )
    identity = event_bus_factory("identity")

    async with app_client(worker) as ops:

        async def consuming() -> bool:
            return (await ops.get("/readyz")).status_code == 200

        await eventually(consuming, within=10, what="worker consuming")
        await identity.connect()
        await identity.publish(Envelope.wrap(kyc_approved(newcomer.id), producer="identity"))

        async def published() -> bool:
            response = await client.post(
                f"/catalog/services/{service['id']}/publish", headers=newcomer.headers
            )
            return response.status_code == 200

        await eventually(published, within=10, what="KYC approval reached the read model")
        await events_observer.wait_for(1, within=10)
        ready = await ops.get("/readyz")
        assert ready.status_code == 200, ready.text

        await identity.publish(Envelope.wrap(suspended(newcomer.id, 7), producer="identity"))

        async def marked() -> bool:
            return bool(await redis_client.hget(mark_key(newcomer.id), "v") == b"7")

        await eventually(marked, within=10, what="access mark recorded")

        async def hidden() -> bool:
            return (await client.get(f"/catalog/services/{service['id']}")).status_code == 404

        await eventually(hidden, within=10, what="suspension hid the service")

    (event,) = events_observer.envelopes("catalog.service_published")
    assert event.data["service_id"] == service["id"]
    async with clean_db.connect() as conn:
        pending = await conn.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    assert pending == 0
