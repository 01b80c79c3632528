"""A cancelled paid order ends in exactly one refund, whatever is redelivered."""

from __future__ import annotations

from dataclasses import replace

from sqlmodel import func, select

from payments.models import PaymentStatus, Refund, RefundStatus

from .factories import Market


async def paid_order(market: Market) -> tuple[object, str]:
    order_id = await market.place()
    body = await market.checked_out(order_id)
    await market.sandbox.pay(body["authorization_url"])
    await market.settled(
        lambda: market.events("payments.payment_succeeded", order_id=order_id), what="paid"
    )
    return order_id, body["reference"]


async def refunds(market: Market) -> int:
    async with market.sessionmaker() as session:
        return int((await session.exec(select(func.count()).select_from(Refund))).one())


async def test_a_cancelled_paid_order_is_refunded_once(market: Market) -> None:
    order_id, reference = await paid_order(market)
    cancelled = market.cancelled(order_id, paid=True)  # type: ignore[arg-type]
    # The same event twice (a redelivery) and a second cancellation event: one refund.
    await market.deliver(cancelled, cancelled, market.cancelled(order_id, paid=True))  # type: ignore[arg-type]
    assert await refunds(market) == 1

    await market.settled(
        lambda: market.events("payments.refund_succeeded", order_id=order_id),
        what="refund processed",
    )
    [event] = await market.events("payments.refund_succeeded")
    assert event["amount"] == 750_000
    assert event["reference"] == reference
    assert await market.status(reference) == "refunded"
    # Its webhooks (pending, processed) redelivered and followed up: nothing more.
    for delivery in await market.sandbox.deliveries(reference=reference):
        if delivery["event"].startswith("refund."):
            await market.sandbox.redeliver(delivery["id"])
    await market.deliver(market.cancelled(order_id, paid=True))  # type: ignore[arg-type]
    await market.follow_up(3)
    assert await refunds(market) == 1
    assert len(await market.events("payments.refund_succeeded")) == 1


async def test_refund_webhooks_out_of_order(market: Market) -> None:
    order_id, _reference = await paid_order(market)
    await market.sandbox.rule(
        kind="webhook", event="refund.pending", delivery="out_of_order", delay=0.3
    )
    await market.cancel(order_id, paid=True)  # type: ignore[arg-type]
    await market.settled(
        lambda: market.events("payments.refund_succeeded", order_id=order_id), what="refund"
    )
    await market.follow_up(3)
    assert len(await market.events("payments.refund_succeeded")) == 1
    async with market.sessionmaker() as session:
        refund = (await session.exec(select(Refund))).one()
    assert refund.status == RefundStatus.processed


async def test_a_failed_refund_is_reported(market: Market) -> None:
    order_id, reference = await paid_order(market)
    await market.sandbox.rule(kind="refund", transaction=reference, outcome="failed")
    await market.cancel(order_id, paid=True)  # type: ignore[arg-type]
    await market.settled(
        lambda: market.events("payments.refund_failed", order_id=order_id), what="refund failed"
    )
    assert await market.events("payments.refund_succeeded") == []
    payment = await market.payment(reference)
    assert payment.status == PaymentStatus.succeeded


async def test_refund_survives_paystack_errors(market: Market) -> None:
    """POST /refund answers 500 (nothing done), then times out after doing it: still one refund."""
    order_id, _reference = await paid_order(market)
    await market.sandbox.rule(kind="fault", method="POST", path="/refund", fault="server_error")
    await market.sandbox.rule(
        kind="fault", method="POST", path="/refund", fault="timeout", effect=True
    )
    await market.cancel(order_id, paid=True)  # type: ignore[arg-type]
    await market.settled(
        lambda: market.events("payments.refund_succeeded", order_id=order_id),
        within=20,
        what="refund processed",
    )
    assert len(await market.events("payments.refund_succeeded")) == 1


async def test_an_unpaid_cancellation_refunds_nothing(market: Market) -> None:
    order_id = await market.place()
    await market.cancel(order_id, paid=False)
    await market.follow_up(2)
    assert await refunds(market) == 0


async def test_a_second_payment_of_a_paid_order_is_announced_and_refunded(market: Market) -> None:
    """The customer paid twice: a checkout given up as abandoned was still payable on
    Paystack's page, and was paid after a new checkout had been paid. Both are announced (the
    money was captured), and the second to arrive is refunded in full."""
    order_id = await market.place()
    first = await market.checked_out(order_id)
    market.deps = replace(
        market.deps,
        settings=market.deps.settings.model_copy(update={"reconcile_give_up": 0.1}),
    )
    await market.settled(
        lambda: market.events("payments.payment_failed", reference=first["reference"]),
        what="the first checkout given up",
    )
    second = await market.checked_out(order_id)
    assert second["reference"] != first["reference"]
    await market.sandbox.pay(second["authorization_url"])
    await market.settled(
        lambda: market.events("payments.payment_succeeded", reference=second["reference"]),
        what="the second paid",
    )
    await market.sandbox.pay(first["authorization_url"])  # the old tab, paid at last
    await market.settled(
        lambda: market.events("payments.refund_succeeded", reference=first["reference"]),
        what="the late one refunded",
    )
    assert len(await market.events("payments.payment_succeeded", order_id=order_id)) == 2
    assert await market.status(first["reference"]) == "refunded"
    assert await market.status(second["reference"]) == "succeeded"
    async with market.sessionmaker() as session:
        [refund] = (await session.exec(select(Refund))).all()
    assert refund.reference == first["reference"]
