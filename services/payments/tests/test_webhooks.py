"""Webhooks: only a correct signature on the raw body is stored; nothing is believed before
Paystack's verify confirms it against our record; a lost webhook is recovered."""

from __future__ import annotations

import hashlib
import hmac
import json

from sqlmodel import func, select

from krika_common.testing import eventually
from payments.models import PaymentStatus, WebhookEvent

from .factories import Market

HOOK = "/payments/webhooks/paystack"


def signed(secret: str, body: bytes) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    return {"x-paystack-signature": signature, "content-type": "application/json"}


async def stored_webhooks(market: Market) -> int:
    async with market.sessionmaker() as session:
        return int((await session.exec(select(func.count()).select_from(WebhookEvent))).one())


def charge(reference: str, amount: int) -> bytes:
    return json.dumps(
        {
            "event": "charge.success",
            "data": {
                "reference": reference,
                "status": "success",
                "amount": amount,
                "currency": "NGN",
            },
        }
    ).encode()


async def test_forged_or_unsigned_webhooks_change_nothing(market: Market) -> None:
    order_id = await market.place()
    body = await market.checked_out(order_id)
    raw = charge(body["reference"], 750_000)
    secret = market.sandbox.secret_key

    unsigned = await market.client.post(
        HOOK, content=raw, headers={"content-type": "application/json"}
    )
    assert unsigned.status_code == 401
    assert unsigned.json()["error"] == "invalid_signature"
    forged = await market.client.post(HOOK, content=raw, headers=signed("sk_test_not_ours", raw))
    assert forged.status_code == 401
    # Signed, then altered: the signature covers the exact bytes.
    altered = await market.client.post(
        HOOK, content=raw.replace(b"750000", b"750001"), headers=signed(secret, raw)
    )
    assert altered.status_code == 401
    # The signature header twice (one right, one wrong) is refused, whichever comes first.
    good = signed(secret, raw)["x-paystack-signature"]
    twice = await market.client.post(
        HOOK,
        content=raw,
        headers=[
            ("content-type", "application/json"),
            ("x-paystack-signature", good),
            ("x-paystack-signature", "00"),
        ],
    )
    assert twice.status_code == 401
    # A body that is not an event, correctly signed: 400, nothing stored.
    junk = b'{"event": 5}'
    malformed = await market.client.post(HOOK, content=junk, headers=signed(secret, junk))
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "malformed_webhook"
    huge = b"x" * (300 * 1024)
    assert (
        await market.client.post(HOOK, content=huge, headers=signed(secret, huge))
    ).status_code == 413

    assert await stored_webhooks(market) == 0
    await market.follow_up(2)
    assert await market.status(body["reference"]) == "pending"
    assert await market.events("payments.payment_succeeded") == []


async def test_a_signed_webhook_is_not_believed_without_verify(market: Market) -> None:
    """A correctly signed charge.success (e.g. replayed from another environment, or sent by
    someone holding the key) for a transaction Paystack says is unpaid changes nothing."""
    order_id = await market.place()
    body = await market.checked_out(order_id)
    raw = charge(body["reference"], 1)
    answer = await market.client.post(
        HOOK, content=raw, headers=signed(market.sandbox.secret_key, raw)
    )
    assert answer.status_code == 200

    async def processed() -> bool:
        async with market.sessionmaker() as session:
            row = (await session.exec(select(WebhookEvent))).one()
            return row.processed_at is not None

    await market.settled(processed, what="the webhook processed")
    assert await market.status(body["reference"]) == "pending"
    assert await market.events("payments.payment_succeeded") == []


async def test_an_amount_mismatch_is_not_believed(market: Market) -> None:
    """Paystack captured another amount than the order's: verify shows it, the payment fails
    (amount_mismatch) and no payment_succeeded is sent."""
    order_id = await market.place(price=750_000)
    body = await market.checked_out(order_id)
    await market.sandbox.rule(kind="charge", reference=body["reference"], amount=100)
    await market.sandbox.pay(body["authorization_url"])
    await market.settled(
        lambda: market.events("payments.payment_failed", reference=body["reference"]),
        what="payment_failed",
    )
    [failed] = await market.events("payments.payment_failed")
    assert failed["reason"] == "amount_mismatch"
    payment = await market.payment(body["reference"])
    assert payment.status == PaymentStatus.failed
    assert payment.captured_amount == 100
    assert await market.events("payments.payment_succeeded") == []


async def test_a_lost_webhook_is_recovered_by_reconciliation(market: Market) -> None:
    order_id = await market.place()
    body = await market.checked_out(order_id)
    await market.sandbox.rule(
        kind="webhook", event="charge.success", reference=body["reference"], delivery="never"
    )
    await market.sandbox.pay(body["authorization_url"])
    [dropped] = await market.sandbox.deliveries(reference=body["reference"])
    assert dropped["status"] == "dropped"
    assert await market.status(body["reference"]) == "pending"

    await market.settled(
        lambda: market.events("payments.payment_succeeded", reference=body["reference"]),
        what="reconciliation finds the payment",
    )
    assert await market.status(body["reference"]) == "succeeded"
    await market.follow_up(2)
    assert len(await market.events("payments.payment_succeeded")) == 1


async def test_a_declined_payment_is_found_failed(market: Market) -> None:
    """Paystack sends no webhook for a decline: reconciliation finds it failed."""
    order_id = await market.place()
    body = await market.checked_out(order_id)
    await market.sandbox.pay(body["authorization_url"], "failed")
    await market.settled(
        lambda: market.events("payments.payment_failed", reference=body["reference"]),
        what="payment_failed",
    )
    assert await market.status(body["reference"]) == "failed"
    # The order can be paid with a new checkout.
    again = await market.checked_out(order_id)
    assert again["reference"] != body["reference"]


async def test_a_late_webhook_after_reconciliation_changes_nothing(market: Market) -> None:
    order_id = await market.place()
    body = await market.checked_out(order_id)
    await market.sandbox.rule(
        kind="webhook",
        event="charge.success",
        reference=body["reference"],
        delivery="late",
        delay=1.5,
    )
    await market.sandbox.pay(body["authorization_url"])
    await market.settled(
        lambda: market.events("payments.payment_succeeded"), what="reconciliation first"
    )

    async def late_delivered() -> bool:
        found = await market.sandbox.deliveries(reference=body["reference"])
        return any(d["status"] == "delivered" for d in found)

    await eventually(late_delivered, within=10, what="the late webhook")
    await market.follow_up(2)
    assert len(await market.events("payments.payment_succeeded")) == 1
