"""POST /refund, GET /refund/:id, refund webhooks and the refund rule."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from krika_common.testing import eventually
from payments.sandbox.testing import Sandbox

from .factories import initialize, paid_transaction
from .receiver import Receiver


async def _events(receiver: Receiver, ref: str, count: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        return len(receiver.events(ref)) >= count

    await eventually(arrived, what=f"{count} webhooks for {ref}")
    return [r.event for r in receiver.events(ref) if r.event["event"].startswith("refund.")]


async def test_a_full_refund(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    paid = await paid_transaction(sandbox, client, amount=500000)
    ref = paid["reference"]
    balance = await sandbox.balance()
    response = await client.post(
        "/refund", json={"transaction": ref, "merchant_note": "Order cancelled"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Refund has been queued for processing"
    data = body["data"]
    assert data["status"] == "pending"
    assert (data["amount"], data["currency"], data["domain"]) == (500000, "NGN", "test")
    assert data["transaction"]["reference"] == ref
    assert data["transaction"]["id"] == paid["id"]
    assert data["merchant_note"] == "Order cancelled"
    assert data["customer_note"] == f"Refund for transaction {ref}"
    assert data["deducted_amount"] == 500000
    assert isinstance(data["id"], int)
    assert await sandbox.balance() == balance - 500000

    events = await _events(receiver, ref, 3)  # charge.success, refund.pending, refund.processed
    assert [e["event"] for e in events] == ["refund.pending", "refund.processed"]
    pending, processed = (e["data"] for e in events)
    assert pending["status"] == "pending"
    assert processed["status"] == "processed"
    for event_data in (pending, processed):
        assert event_data["transaction_reference"] == ref
        assert event_data["currency"] == "NGN"
        assert event_data["domain"] == "test"
        assert event_data["id"] == str(data["id"])
        assert event_data["customer"]["email"] == "customer@example.com"
        # As in Paystack's documented refund.pending / refund.processed payloads.
        assert event_data["amount"] == "500000"
    assert pending["refund_reference"] is None
    assert processed["refund_reference"]

    fetched = await client.get(f"/refund/{data['id']}")
    assert fetched.json()["message"] == "Refund retrieved"
    assert fetched.json()["data"]["status"] == "processed"
    assert fetched.json()["data"]["refunded_at"] is not None
    assert fetched.json()["data"]["transaction"] == paid["id"]
    assert fetched.json()["data"]["transaction_reference"] == ref
    verified = (await client.get(f"/transaction/verify/{ref}")).json()["data"]
    assert verified["status"] == "reversed"


async def test_partial_refunds_up_to_the_amount(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    paid = await paid_transaction(sandbox, client, amount=300000)
    first = await client.post("/refund", data={"transaction": str(paid["id"]), "amount": "100000"})
    assert first.status_code == 200, first.text
    assert first.json()["data"]["amount"] == 100000
    too_much = await client.post(
        "/refund", json={"transaction": paid["reference"], "amount": 200001}
    )
    assert too_much.status_code == 400
    assert too_much.json()["status"] is False
    rest = await client.post("/refund", json={"transaction": paid["reference"]})
    assert rest.json()["data"]["amount"] == 200000
    done = await client.post("/refund", json={"transaction": paid["reference"], "amount": 1})
    assert done.status_code == 400
    assert done.json()["message"] == "Transaction has been fully reversed"


async def test_refunding_an_unpaid_transaction(client: httpx.AsyncClient) -> None:
    started = await initialize(client)
    response = await client.post("/refund", json={"transaction": started["reference"]})
    assert response.status_code == 400
    assert response.json()["status"] is False
    assert "not successful" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, '"transaction" is required'),
        ({"transaction": "no-such-ref"}, "Transaction not found"),
        ({"transaction": "987654321"}, "Transaction not found"),
    ],
)
async def test_refund_refusals(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/refund", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == message


@pytest.mark.parametrize("amount", ["abc", 10.5, 0, -5])
async def test_bad_refund_amounts(sandbox: Sandbox, client: httpx.AsyncClient, amount: Any) -> None:
    paid = await paid_transaction(sandbox, client)
    response = await client.post(
        "/refund", json={"transaction": paid["reference"], "amount": amount}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid Amount Sent"


async def test_insufficient_balance_for_a_refund(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    paid = await paid_transaction(sandbox, client, amount=500000)
    before = await sandbox.balance()
    try:
        await sandbox.set_balance(1000)
        response = await client.post("/refund", json={"transaction": paid["reference"]})
        assert response.status_code == 400
        assert (
            response.json()["message"]
            == "Insufficient balance to fulfill this refund. Please top up."
        )
        assert await sandbox.balance() == 1000
    finally:
        await sandbox.set_balance(before)


async def test_a_refund_that_fails(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    paid = await paid_transaction(sandbox, client, amount=200000)
    await sandbox.rule(kind="refund", transaction=paid["reference"], outcome="failed")
    balance = await sandbox.balance()
    created = (await client.post("/refund", json={"transaction": paid["reference"]})).json()
    assert created["data"]["status"] == "pending"
    assert await sandbox.balance() == balance - 200000
    events = await _events(receiver, paid["reference"], 3)
    assert [e["event"] for e in events] == ["refund.pending", "refund.failed"]
    assert events[1]["data"]["status"] == "failed"
    assert events[1]["data"]["amount"] == 200000
    assert await sandbox.balance() == balance
    fetched = (await client.get(f"/refund/{created['data']['id']}")).json()["data"]
    assert fetched["status"] == "failed"
    # The money is refundable again.
    again = await client.post("/refund", json={"transaction": paid["reference"]})
    assert again.status_code == 200


async def test_fetch_an_unknown_refund(client: httpx.AsyncClient) -> None:
    assert (await client.get("/refund/987654321")).status_code == 404
    assert (await client.get("/refund/abc")).status_code == 404
