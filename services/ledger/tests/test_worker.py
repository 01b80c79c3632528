"""The worker as it runs: it books what arrives on the bus (through the inbox), its relay
publishes the withdrawals the API reserved, and its upkeep loop applies parked events whose
money arrived by another road."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import Envelope, EventBus, EventData, KycApproved, PayoutAccountAdded
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client
from ledger.config import Settings
from ledger.models import AccountKind
from ledger.worker import create_worker_app

from .factories import NGN, Books, now, payout


@asynccontextmanager
async def running_worker(
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """The worker, consuming; yields `publish(*events)`, which sends them on the bus as their
    producers would."""
    worker = create_worker_app(
        settings.model_copy(update={"amqp_url": amqp_url, "events_exchange": events_exchange}),
        make_bus=lambda queue: event_bus_factory("ledger", queue=f"{queue}.test.{run_id}"),
    )
    producer = event_bus_factory("producers")
    async with app_client(worker) as ops:

        async def consuming() -> bool:
            return (await ops.get("/readyz")).status_code == 200

        await eventually(consuming, within=10, what="worker consuming")
        await producer.connect()

        async def publish(*events: EventData) -> None:
            for event in events:
                await producer.publish(Envelope.wrap(event, producer="test"))

        yield publish


async def parked(engine: AsyncEngine) -> list[tuple[str, str, bool]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_type, subject, resolved_at IS NOT NULL FROM parked_events "
                "ORDER BY parked_at"
            )
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def test_worker_books_from_the_bus_and_relays_withdrawals(
    books: Books,
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    events_observer: EventsObserver,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
    clean_db: AsyncEngine,
) -> None:
    price = 1_234_567
    net = price - 123_457
    order = books.order(price)
    provider = books.provider.id
    async with running_worker(
        settings, amqp_url, events_exchange, event_bus_factory, run_id
    ) as publish:
        await publish(
            KycApproved(
                submission_id=uuid.uuid4(),
                user_id=provider,
                decided_by=uuid.uuid4(),
                decided_at=now(),
            ),
            PayoutAccountAdded(
                payout_account_id=uuid.uuid4(),
                provider_id=provider,
                bank_code="058",
                account_number_last4="6789",
                account_name="P",
                currency=NGN,
                added_at=now(),
            ),
            order.placed(),
            order.paid(),
        )

        async def in_escrow() -> bool:
            return bool((await books.wallet())["in_escrow"] == price)

        await eventually(in_escrow, within=10, what="the payment booked into escrow")
        await publish(order.completed())

        async def earned() -> bool:
            return bool((await books.wallet())["available"] == net)

        await eventually(earned, within=10, what="the completion released the escrow")

        answer = await books.withdraw(net)
        assert answer.status_code == 201, answer.text
        withdrawal_id = answer.json()["id"]
        await eventually(
            lambda: events_observer.envelopes("ledger.withdrawal_requested"),
            within=10,
            what="the relay published the withdrawal",
        )
        [requested] = events_observer.envelopes("ledger.withdrawal_requested")
        assert requested.data["withdrawal_id"] == withdrawal_id
        assert (requested.data["provider_id"], requested.data["amount"]) == (str(provider), net)

        await publish(payout(uuid.UUID(withdrawal_id), provider, net))

        async def paid_out() -> bool:
            got = await books.client.get(
                f"/wallet/withdrawals/{withdrawal_id}", headers=books.provider.headers
            )
            return bool(got.json()["status"] == "succeeded")

        await eventually(paid_out, within=10, what="the payout posted the reservation")

    wallet = await books.wallet()
    assert (wallet["available"], wallet["reserved"], wallet["lifetime_earned"]) == (0, 0, net)
    assert await books.balance(AccountKind.commission) == 123_457
    assert await books.balance(AccountKind.clearing) == -(price - net)
    assert (await books.invariants()).ok
    async with clean_db.connect() as conn:
        unpublished = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        )
    assert unpublished == 0


async def test_a_completion_before_its_payment_waits_then_applies(
    books: Books,
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
    clean_db: AsyncEngine,
) -> None:
    order = books.order(400_000)
    async with running_worker(
        settings, amqp_url, events_exchange, event_bus_factory, run_id
    ) as publish:
        await publish(order.placed(), order.completed())

        async def waiting() -> bool:
            return await parked(clean_db) == [("orders.order_completed", str(order.id), False)]

        await eventually(waiting, within=10, what="the completion parked")
        assert await books.balance(AccountKind.available, books.provider.id) == 0

        await publish(order.paid())

        async def released() -> bool:
            return await books.balance(AccountKind.available, books.provider.id) == 360_000

        await eventually(released, within=10, what="the parked completion applied")
    assert await parked(clean_db) == [("orders.order_completed", str(order.id), True)]
    assert await books.balance(AccountKind.escrow, order.id) == 0
    assert (await books.invariants()).ok


async def test_a_refund_never_spends_what_another_order_owes(
    books: Books, clean_db: AsyncEngine
) -> None:
    """One customer, two cancelled orders. A's refund arrives before A's cancellation: it
    waits (parked on A) rather than paying out the refund payable that B's cancellation made,
    so B's refund applies at once and A's applies when A's cancellation is booked — no order's
    refund is left waiting for the worker's upkeep loop."""
    a, b = books.order(100_000), books.order(200_000)
    await books.deliver(
        a.placed(),
        b.placed(),
        a.paid(),
        b.paid(),
        b.cancelled(paid=True),
        a.refunded(),
        b.refunded(),
        a.cancelled(paid=True),
    )
    assert await parked(clean_db) == [("payments.refund_succeeded", str(a.id), True)]
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    assert await books.balance(AccountKind.clearing) == 0
    assert (await books.invariants()).ok
