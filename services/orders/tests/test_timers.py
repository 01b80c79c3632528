"""Durable timers: the unpaid expiry and the auto-completion, fired once by whichever worker
claims them first, and the worker process itself (relay, consumers, timers)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import make_engine, make_sessionmaker
from krika_common.events import Envelope, EventBus
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client
from orders.config import Settings
from orders.service import fire_due_timers
from orders.worker import create_worker_app, run_timers

from .factories import Market, outbox_envelopes, outbox_types, payment

CANCELLED = "orders.order_cancelled"


async def timer_of(
    engine: AsyncEngine, order: dict[str, Any]
) -> tuple[str | None, datetime | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT timer, timer_due_at FROM orders WHERE id = :id"), {"id": order["id"]}
            )
        ).one()
        return row[0], row[1]


async def make_due(engine: AsyncEngine) -> None:
    """Every pending timer falls due now (as if its time had passed)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE orders SET timer_due_at = now() - interval '1 second' "
                "WHERE timer IS NOT NULL"
            )
        )


async def test_placing_sets_the_unpaid_timer_and_paying_clears_it(
    market: Market, clean_db: AsyncEngine, settings: Settings
) -> None:
    order = await market.order()
    timer, due = await timer_of(clean_db, order)
    assert timer == "expire"
    assert due is not None
    created = datetime.fromisoformat(order["created_at"])
    assert due - created == timedelta(seconds=settings.unpaid_timeout)

    await market.deliver(payment(order))
    assert await timer_of(clean_db, order) == (None, None)


async def test_an_unpaid_order_is_cancelled_once_by_the_system(
    market: Market,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    unpaid = await market.order()
    paid = await market.paid_order()
    not_yet = await market.order()
    async with clean_db.begin() as conn:
        await conn.execute(
            text("UPDATE orders SET timer_due_at = now() - interval '1 second' WHERE id = :id"),
            {"id": unpaid["id"]},
        )
    assert await fire_due_timers(sessionmaker, settings, limit=10) == 1
    assert await fire_due_timers(sessionmaker, settings, limit=10) == 0

    got = (
        await market.client.get(f"/orders/{unpaid['id']}", headers=market.customer.headers)
    ).json()
    assert got["status"] == "cancelled"
    last = (await market.history(unpaid))[-1]
    assert (last["from_status"], last["to_status"], last["actor_role"], last["actor_id"]) == (
        "pending",
        "cancelled",
        "system",
        None,
    )
    assert last["note"] == "Not paid in time"
    (event,) = await outbox_envelopes(clean_db, CANCELLED)
    assert event["data"]["order_id"] == unpaid["id"]
    assert (event["data"]["paid"], event["data"]["cancelled_by"]) == (False, "system")
    for other in (paid, not_yet):
        still = await market.client.get(f"/orders/{other['id']}", headers=market.customer.headers)
        assert still.json()["status"] != "cancelled"


async def test_a_delivery_unanswered_completes_automatically(
    market: Market,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    order = await market.delivered_order()
    timer, due = await timer_of(clean_db, order)
    assert timer == "auto_complete"
    got = (
        await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
    ).json()
    assert due is not None
    delivered_at = datetime.fromisoformat(got["delivered_at"])
    assert due - delivered_at == timedelta(seconds=settings.auto_complete_after)

    await make_due(clean_db)
    assert await fire_due_timers(sessionmaker, settings, limit=10) == 1
    done = (
        await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
    ).json()
    assert done["status"] == "completed"
    last = (await market.history(order))[-1]
    assert (last["from_status"], last["to_status"], last["actor_role"]) == (
        "delivered",
        "completed",
        "system",
    )
    assert (await outbox_types(clean_db))[-2:] == [
        "orders.order_status_changed",
        "orders.order_completed",
    ]


async def test_a_revision_request_stops_the_auto_completion(
    market: Market, clean_db: AsyncEngine
) -> None:
    order = await market.delivered_order()
    await market.act(order, "request-revision", market.customer, {"note": "again"})
    assert await timer_of(clean_db, order) == (None, None)


async def test_two_workers_fire_each_timer_exactly_once(
    market: Market, clean_db: AsyncEngine, settings: Settings, database_url: str
) -> None:
    orders = [await market.order() for _ in range(12)]
    delivered = [await market.delivered_order() for _ in range(4)]
    await make_due(clean_db)

    fast = settings.model_copy(update={"timer_poll_interval": 0.01, "timer_batch": 3})
    engines = [make_engine(database_url, pool_size=2) for _ in range(2)]
    workers = [asyncio.create_task(run_timers(make_sessionmaker(e), fast)) for e in engines]
    try:

        async def all_fired() -> bool:
            async with clean_db.connect() as conn:
                left = await conn.scalar(
                    text("SELECT count(*) FROM orders WHERE timer IS NOT NULL")
                )
                return bool(left == 0)

        await eventually(all_fired, within=10, what="every timer fired")
        await asyncio.sleep(0.1)  # a few more rounds of both loops
    finally:
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for engine in engines:
            await engine.dispose()

    cancelled = [e["data"]["order_id"] for e in await outbox_envelopes(clean_db, CANCELLED)]
    assert sorted(cancelled) == sorted(o["id"] for o in orders)
    completed = [
        e["data"]["order_id"] for e in await outbox_envelopes(clean_db, "orders.order_completed")
    ]
    assert sorted(completed) == sorted(o["id"] for o in delivered)
    async with clean_db.connect() as conn:
        system_lines = await conn.scalar(
            text(
                "SELECT count(*) FROM order_history WHERE actor_role = 'system' "
                "AND kind = 'transition' AND to_status IN ('cancelled', 'completed')"
            )
        )
    assert system_lines == 16


async def test_the_worker_relays_consumes_and_fires_timers(
    market: Market,
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    events_observer: EventsObserver,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
    clean_db: AsyncEngine,
) -> None:
    order = await market.order()
    to_expire = (await market.place(key="an-old-key")).json()
    async with clean_db.begin() as conn:
        await conn.execute(
            text("UPDATE orders SET timer_due_at = now() WHERE id = :id"), {"id": to_expire["id"]}
        )
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                "WHERE key = 'an-old-key'"
            )
        )
    worker = create_worker_app(
        settings.model_copy(
            update={
                "amqp_url": amqp_url,
                "events_exchange": events_exchange,
                "timer_poll_interval": 0.05,
            }
        ),
        make_bus=lambda queue: event_bus_factory("orders", queue=f"{queue}.test.{run_id}"),
    )
    payments = event_bus_factory("payments")
    async with app_client(worker) as ops:

        async def ready() -> bool:
            return (await ops.get("/readyz")).status_code == 200

        await eventually(ready, within=10, what="worker consuming")
        await payments.connect()
        await payments.publish(Envelope.wrap(payment(order), producer="payments"))

        async def is_paid() -> bool:
            got = await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
            return bool(got.json()["status"] == "paid")

        await eventually(is_paid, within=10, what="the payment reached the order")

        async def expired() -> bool:
            got = await market.client.get(
                f"/orders/{to_expire['id']}", headers=market.customer.headers
            )
            return bool(got.json()["status"] == "cancelled")

        await eventually(expired, within=10, what="the unpaid order expired")

        def published() -> bool:
            return len(events_observer.envelopes(CANCELLED)) == 1 and any(
                e.data["to_status"] == "paid"
                for e in events_observer.envelopes("orders.order_status_changed")
            )

        await eventually(published, within=10, what="the relay published")

        async def pruned() -> bool:
            async with clean_db.connect() as conn:
                keys = await conn.scalar(text("SELECT count(*) FROM idempotency_keys"))
                return bool(keys == 1)  # the expired key went, the other stays

        await eventually(pruned, within=10, what="retention pruning the expired key")
    placed = {e.data["order_id"] for e in events_observer.envelopes("orders.order_placed")}
    assert placed == {order["id"], to_expire["id"]}
    assert uuid.UUID(events_observer.envelopes(CANCELLED)[0].data["order_id"]) == uuid.UUID(
        to_expire["id"]
    )
