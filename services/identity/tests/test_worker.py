from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.config import Settings
from identity.worker import create_worker_app
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client

from .factories import register


async def test_worker_publishes_what_identity_committed(
    client: httpx.AsyncClient,
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    events_observer: EventsObserver,
    clean_db: AsyncEngine,
) -> None:
    user = await register(client, role="provider")
    worker = create_worker_app(
        settings.model_copy(update={"amqp_url": amqp_url, "events_exchange": events_exchange})
    )

    async with app_client(worker) as ops:
        await events_observer.wait_for(2, within=10)
        ready = await ops.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"]) == {"database", "broker"}

    registered = events_observer.envelopes("identity.user_registered")
    assert [e.data["user_id"] for e in registered] == [user["id"]]
    assert registered[0].producer == "identity"
    assert len(events_observer.envelopes("identity.email_verification_requested")) == 1

    async def all_marked_published() -> bool:
        async with clean_db.connect() as conn:
            pending = await conn.scalar(
                text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        return bool(pending == 0)

    await eventually(all_marked_published, what="outbox rows marked published")
