"""Checkout → pay on the sandbox's page → signed webhook → verified → payment_succeeded once."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from fastapi import FastAPI

from krika_common.testing import eventually
from payments.models import PaymentStatus

from .factories import Actor, Market


async def test_checkout_pay_webhook_verify_succeeds_once(market: Market) -> None:
    order_id = await market.place(price=750_000)
    body = await market.checked_out(order_id)
    assert body["amount"] == 750_000
    assert body["currency"] == "NGN"
    assert body["authorization_url"].startswith(market.sandbox.base_url)
    assert body["access_code"]
    assert body["reference"].startswith("krk-")
    reference = body["reference"]
    assert await market.status(reference) == "pending"

    page = await market.sandbox.pay(body["authorization_url"], "success")
    assert page.status_code < 400

    async def paid() -> bool:
        return await market.status(reference) == "succeeded"

    await eventually(paid, what="the webhook makes the payment succeed")
    [event] = await market.events("payments.payment_succeeded")
    assert event["order_id"] == str(order_id)
    assert event["reference"] == reference
    assert event["amount"] == 750_000
    assert event["customer_id"] == str(market.customer.id)

    # Paystack redelivers the same webhook: stored once, applied once.
    [delivery] = await market.sandbox.deliveries(reference=reference, event="charge.success")
    await market.sandbox.redeliver(delivery["id"])
    await eventually(
        lambda: market.sandbox.deliveries(reference=reference, event="charge.success"),
        what="the redelivery",
    )
    await market.follow_up(2)
    assert len(await market.events("payments.payment_succeeded")) == 1

    # A paid order cannot be checked out again.
    again = await market.checkout(order_id)
    assert again.status_code == 409
    assert again.json()["error"] == "order_already_paid"


async def test_a_webhook_sent_twice_is_applied_once(market: Market) -> None:
    order_id = await market.place()
    body = await market.checked_out(order_id)
    await market.sandbox.rule(
        kind="webhook", event="charge.success", reference=body["reference"], delivery="twice"
    )
    await market.sandbox.pay(body["authorization_url"])

    async def two_delivered() -> bool:
        found = await market.sandbox.deliveries(reference=body["reference"])
        return [d["status"] for d in found].count("delivered") == 2

    await eventually(two_delivered, what="both deliveries")
    await market.settled(
        lambda: market.events("payments.payment_succeeded"), what="payment_succeeded"
    )
    await market.follow_up(2)
    assert len(await market.events("payments.payment_succeeded")) == 1


async def test_webhook_arriving_before_the_checkout_answer(
    market: Market, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The customer pays, and Paystack's webhook reaches us, while our checkout request is
    still between Paystack's answer and its own commit: one success, and the checkout still
    answers its URL."""
    app_paystack = app.state.payments.paystack
    real_initialize = app_paystack.initialize
    webhook_stored = asyncio.Event()

    async def initialize_then_pay(**kwargs: object) -> object:
        answer = await real_initialize(**kwargs)
        await market.sandbox.pay(answer.authorization_url)

        async def delivered() -> bool:
            found = await market.sandbox.deliveries(reference=answer.reference)
            return any(d["status"] == "delivered" for d in found)

        await eventually(delivered, what="the webhook reached us before checkout answered")
        webhook_stored.set()
        return answer

    monkeypatch.setattr(app_paystack, "initialize", initialize_then_pay)
    order_id = await market.place()
    body = await market.checked_out(order_id)
    assert webhook_stored.is_set()
    assert body["authorization_url"]

    async def paid() -> bool:
        return await market.status(body["reference"]) == "succeeded"

    await market.settled(paid, what="the payment succeeds")
    assert len(await market.events("payments.payment_succeeded")) == 1


async def test_checkout_rules(market: Market, mint_token: object, admin: Actor) -> None:
    order_id = await market.place()

    # Not yet known to payments (orders' event not received): retry shortly.
    unknown = await market.checkout(uuid.uuid4())
    assert unknown.status_code == 409
    assert unknown.json()["error"] == "order_not_ready"
    assert unknown.headers["Retry-After"] == "1"

    # Someone else's order is not found; a provider cannot check out.
    stranger = Actor(mint_token, "customer")  # type: ignore[arg-type]
    other = await market.checkout(order_id, actor=stranger)
    assert other.status_code == 404
    assert other.json()["error"] == "order_not_found"
    provider = await market.checkout(order_id, actor=market.provider)
    assert provider.status_code == 403

    # The key is required; a replay answers the first result; a pending payment is reused.
    missing = await market.client.post(
        "/payments/checkout", json={"order_id": str(order_id)}, headers=market.customer.headers
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "idempotency_key_missing"
    first = await market.checkout(order_id, key="k1")
    replay = await market.checkout(order_id, key="k1")
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()
    other_key = await market.checkout(order_id, key="k2")
    assert other_key.json()["reference"] == first.json()["reference"]

    # Only its customer (or an admin) sees a payment.
    reference = first.json()["reference"]
    seen = await market.client.get(f"/payments/{reference}", headers=stranger.headers)
    assert seen.status_code == 404
    by_admin = await market.client.get(f"/payments/{reference}", headers=admin.headers)
    assert by_admin.status_code == 200
    assert by_admin.json()["status"] == "pending"

    # A cancelled order cannot be paid.
    await market.cancel(order_id, paid=False)
    closed = await market.checkout(order_id)
    assert closed.status_code == 409
    assert closed.json()["error"] == "order_not_payable"


async def test_concurrent_checkouts_make_one_payment(market: Market) -> None:
    order_id = await market.place()
    answers = await asyncio.gather(*(market.checkout(order_id) for _ in range(4)))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    assert len({a.json()["reference"] for a in answers}) == 1


async def test_paystack_down_then_retry(market: Market) -> None:
    """Initialize answers 500 (nothing happened): 503, our reference kept; the retry reuses it.
    Initialize times out after taking it: the retry gets "duplicate reference" and starts over
    with a new reference, which works."""
    order_id = await market.place()
    await market.sandbox.rule(
        kind="fault", method="POST", path="/transaction/initialize", fault="server_error"
    )
    down = await market.checkout(order_id)
    assert down.status_code == 503
    assert down.json()["error"] == "payment_provider_unavailable"
    retried = await market.checked_out(order_id)
    payment = await market.payment(retried["reference"])
    assert payment.status == PaymentStatus.pending

    order_id = await market.place()
    await market.sandbox.rule(
        kind="fault",
        method="POST",
        path="/transaction/initialize",
        fault="timeout",
        effect=True,
    )
    lost = await market.checkout(order_id)
    assert lost.status_code == 503
    fresh = await market.checked_out(order_id)
    await market.sandbox.pay(fresh["authorization_url"])
    await market.settled(
        lambda: market.events("payments.payment_succeeded", order_id=order_id),
        what="the fresh reference is paid",
    )


async def test_the_secret_key_never_reaches_the_logs(
    market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG (httpx's request lines included) through checkout, payment,
    webhook, verify and a refused call: the secret key appears nowhere."""
    caplog.set_level(logging.DEBUG)
    order_id = await market.place()
    body = await market.checked_out(order_id)
    await market.sandbox.pay(body["authorization_url"])
    await market.settled(lambda: market.events("payments.payment_succeeded"), what="paid")
    refused = await market.client.post(
        "/payments/payout-accounts",
        json={"bank_code": "058", "account_number": "0000000001"},
        headers=market.provider.headers,
    )
    assert refused.status_code == 422
    assert caplog.records
    assert market.sandbox.secret_key not in caplog.text
