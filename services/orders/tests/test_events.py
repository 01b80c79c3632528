"""Payments' events as the worker hands them to orders' inbox handlers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import Envelope

from .factories import (
    Market,
    clear_outbox,
    outbox_envelopes,
    outbox_types,
    payment,
    payment_failure,
    refund,
    refund_failure,
)

CHANGED = "orders.order_status_changed"


async def test_a_payment_delivered_twice_pays_once(market: Market, clean_db: AsyncEngine) -> None:
    order = await market.order()
    await clear_outbox(clean_db)
    event = Envelope.wrap(payment(order), producer="payments")
    await market.deliver(event)
    await market.deliver(event)  # the same event again: the inbox skips it
    await market.deliver(payment(order, payment_id=event.data["payment_id"]))  # same payment
    got = (
        await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
    ).json()
    assert (got["status"], got["paid"]) == ("paid", True)
    assert await outbox_types(clean_db) == [CHANGED]
    history = await market.history(order)
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "pending"),
        ("pending", "paid"),
    ]


async def test_a_second_payment_is_noted_not_applied(market: Market, clean_db: AsyncEngine) -> None:
    order = await market.paid_order()
    await clear_outbox(clean_db)
    await market.deliver(payment(order))  # another payment id: a double charge
    assert await outbox_types(clean_db) == []
    last = (await market.history(order))[-1]
    assert last["kind"] == "note"
    assert "Another payment" in last["note"]


async def test_a_payment_that_does_not_match_the_price_is_not_applied(market: Market) -> None:
    order = await market.order()
    await market.deliver(payment(order, amount=order["price"] - 1))
    got = (
        await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
    ).json()
    assert (got["status"], got["paid"]) == ("pending", False)
    assert "does not match" in (await market.history(order))[-1]["note"]


async def test_a_late_payment_on_a_cancelled_order_is_refunded(
    market: Market, clean_db: AsyncEngine
) -> None:
    order = await market.order()
    await market.act(order, "cancel", market.customer, {"reason": "Too slow to pay"})
    await clear_outbox(clean_db)
    await market.deliver(payment(order))
    got = (
        await market.client.get(f"/orders/{order['id']}", headers=market.customer.headers)
    ).json()
    assert (got["status"], got["paid"]) == ("cancelled", True)
    assert await outbox_types(clean_db) == ["orders.order_cancelled"]
    (event,) = await outbox_envelopes(clean_db, "orders.order_cancelled")
    assert event["data"]["paid"] is True
    assert event["data"]["order_id"] == order["id"]
    assert event["data"]["price"] == order["price"]
    last = (await market.history(order))[-1]
    assert (last["kind"], last["to_status"], last["actor_role"]) == ("note", "cancelled", "system")

    # Its refund is noted too; the failed payment before as well.
    await market.deliver(refund(order), payment_failure(order))
    notes = [h["note"] for h in (await market.history(order))[-2:]]
    assert "Refunded" in notes[0]
    assert "failed: Declined" in notes[1]
    await market.deliver(refund_failure(order))
    assert "Refund of" in (await market.history(order))[-1]["note"]
    assert await outbox_types(clean_db) == ["orders.order_cancelled"]


async def test_a_payment_for_an_unknown_order_is_ignored(market: Market) -> None:
    import uuid

    order = {
        "id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()),
        "price": 1,
        "currency": "NGN",
    }
    await market.deliver(payment(order), payment_failure(order), refund(order))
