"""POST /transferrecipient, POST /transfer, /transfer/finalize_transfer, /transfer/verify, and
the transfer rules (how a transfer answers and how it ends)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from krika_common.testing import eventually
from payments.sandbox.banks import account_name
from payments.sandbox.testing import Sandbox

from .factories import recipient, reference, transfer
from .receiver import Receiver

# ---------------------------------------------------------------------------- recipients


async def test_create_a_recipient(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/transferrecipient",
        json={
            "type": "nuban",
            "name": "Ada Obi",
            "account_number": "1029384756",
            "bank_code": "044",
            "currency": "NGN",
            "description": "Provider payouts",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Transfer recipient created successfully"
    data = body["data"]
    assert re.fullmatch(r"RCP_[a-z0-9]{15}", data["recipient_code"])
    assert (data["type"], data["name"], data["currency"], data["domain"]) == (
        "nuban",
        "Ada Obi",
        "NGN",
        "test",
    )
    assert data["active"] is True
    assert isinstance(data["id"], int)
    assert data["details"] == {
        "authorization_code": None,
        "account_number": "1029384756",
        "account_name": account_name("1029384756"),
        "bank_code": "044",
        "bank_name": "Access Bank",
    }


async def test_the_same_account_answers_the_existing_recipient(client: httpx.AsyncClient) -> None:
    first = await recipient(client, "5647382910")
    response = await client.post(
        "/transferrecipient",
        data={
            "type": "nuban",
            "name": "Another Name",
            "account_number": "5647382910",
            "bank_code": "058",
        },
    )
    assert response.json()["data"]["recipient_code"] == first
    assert response.json()["data"]["name"] == "Ada Obi"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": None}, '"type" is required'),
        ({"name": None}, '"name" is required'),
        ({"account_number": None}, "Account number is required"),
        ({"bank_code": None}, "bank_code is required"),
        ({"bank_code": "999"}, "Unknown bank code"),
        ({"account_number": "12345"}, "Account number is invalid"),
        ({"account_number": "0000009999"}, "Cannot resolve account"),
    ],
)
async def test_recipient_refusals(
    client: httpx.AsyncClient, fields: dict[str, Any], message: str
) -> None:
    body = {"type": "nuban", "name": "Ada", "account_number": "0123456789", "bank_code": "058"}
    body = {k: v for k, v in (body | fields).items() if v is not None}
    response = await client.post("/transferrecipient", json=body)
    assert response.status_code == 400
    assert response.json()["status"] is False
    assert response.json()["message"] == message


# ---------------------------------------------------------------------------- transfers


async def test_a_transfer_is_queued_then_succeeds(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    code = await recipient(client)
    before = await sandbox.balance()
    ref = reference("wd")
    response = await transfer(client, code, amount=250000, reference=ref)
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Transfer has been queued"
    data = body["data"]
    assert data["status"] == "pending"
    assert data["reference"] == ref
    assert re.fullmatch(r"TRF_[a-z0-9]{16}", data["transfer_code"])
    assert (data["amount"], data["currency"], data["source"], data["domain"]) == (
        250000,
        "NGN",
        "balance",
        "test",
    )
    assert isinstance(data["recipient"], int)
    assert await sandbox.balance() == before - 250000

    async def succeeded() -> bool:
        return len(receiver.events(ref, "transfer.success")) == 1

    await eventually(succeeded, what="transfer.success")
    event = receiver.events(ref)[0].event
    assert event["event"] == "transfer.success"
    assert event["data"]["status"] == "success"
    assert event["data"]["transfer_code"] == data["transfer_code"]
    assert event["data"]["recipient"]["recipient_code"] == code
    assert event["data"]["recipient"]["details"]["account_number"] == "0123456789"
    verified = await client.get(f"/transfer/verify/{ref}")
    assert verified.json()["message"] == "Transfer retrieved"
    assert verified.json()["data"]["status"] == "success"
    assert verified.json()["data"]["recipient"]["recipient_code"] == code
    by_code = await client.get(f"/transfer/{data['transfer_code']}")
    assert by_code.json()["data"] == verified.json()["data"]
    assert await sandbox.balance() == before - 250000


async def test_numeric_string_amounts_and_form_bodies(client: httpx.AsyncClient) -> None:
    code = await recipient(client)
    ref = reference("wd")
    response = await client.post(
        "/transfer",
        data={"source": "balance", "amount": "10000", "recipient": code, "reference": ref},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["amount"] == 10000


@pytest.mark.parametrize("amount", [None, "", "abc", 100.5, "100.5", 0, -100, "-1"])
async def test_bad_transfer_amounts(client: httpx.AsyncClient, amount: Any) -> None:
    code = await recipient(client)
    ref = reference("wd")
    response = await transfer(client, code, amount=amount, reference=ref)
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid amount passed."
    assert (await client.get(f"/transfer/verify/{ref}")).status_code == 404


async def test_insufficient_balance(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    code = await recipient(client)
    before = await sandbox.balance()
    try:
        await sandbox.set_balance(100000)
        ref = reference("wd")
        response = await transfer(client, code, amount=100001, reference=ref)
        assert response.status_code == 400
        assert response.json()["message"] == "Your balance is not enough to fulfill this request"
        assert await sandbox.balance() == 100000
        assert (await client.get(f"/transfer/verify/{ref}")).status_code == 404
        exact = await transfer(client, code, amount=100000)
        assert exact.status_code == 200
        assert await sandbox.balance() == 0
    finally:
        await sandbox.set_balance(before)


async def test_a_duplicate_reference_is_refused(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    code = await recipient(client)
    ref = reference("wd")
    assert (await transfer(client, code, reference=ref)).status_code == 200
    balance = await sandbox.balance()
    again = await transfer(client, code, reference=ref, amount=999)
    assert again.status_code == 400
    assert (
        again.json()["message"]
        == "Please provide a unique reference. Reference already exists on a transfer"
    )
    assert await sandbox.balance() == balance


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"recipient": "RCP_doesnotexist0000"}, "Recipient specified is invalid"),
        ({"recipient": None}, '"recipient" is required'),
        ({"reference": "has spaces!"}, "Your reference contains illegal special characters"),
        ({"currency": "XYZ"}, "Currency not supported by merchant"),
    ],
)
async def test_transfer_refusals(
    client: httpx.AsyncClient, fields: dict[str, Any], message: str
) -> None:
    code = await recipient(client)
    body = {"source": "balance", "amount": 1000, "recipient": code, "reference": reference("wd")}
    body = {k: v for k, v in (body | fields).items() if v is not None}
    response = await client.post("/transfer", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == message


async def test_verify_an_unknown_transfer(client: httpx.AsyncClient) -> None:
    response = await client.get("/transfer/verify/no-such-transfer")
    assert response.status_code == 404
    assert response.json()["message"] == "Transfer not found"


# ---------------------------------------------------------------------------- rules


async def _ended(receiver: Receiver, ref: str, event: str) -> dict[str, Any]:
    async def arrived() -> bool:
        return bool(receiver.events(ref, event))

    await eventually(arrived, what=event)
    return receiver.events(ref, event)[0].event


async def test_otp_then_finalize(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    code = await recipient(client)
    ref = reference("wd")
    await sandbox.rule(kind="transfer", reference=ref, answer="otp", outcome="success")
    response = await transfer(client, code, reference=ref)
    assert response.status_code == 200
    assert response.json()["message"] == "Transfer requires OTP to continue"
    data = response.json()["data"]
    assert data["status"] == "otp"

    wrong = await client.post(
        "/transfer/finalize_transfer", json={"transfer_code": data["transfer_code"], "otp": "1"}
    )
    assert wrong.status_code == 400
    assert wrong.json()["status"] is False
    unknown = await client.post(
        "/transfer/finalize_transfer", json={"transfer_code": "TRF_nope", "otp": "123456"}
    )
    assert unknown.json()["message"] == "Transfer code is invalid"
    missing = await client.post("/transfer/finalize_transfer", json={"otp": "123456"})
    assert missing.json()["message"] == '"transfer_code" is required'
    # Without the OTP nothing moves on, however long it waits (settle_after is 0.2 s here).
    await asyncio.sleep(0.6)
    assert (await client.get(f"/transfer/verify/{ref}")).json()["data"]["status"] == "otp"
    assert receiver.events(ref) == []

    finalized = await client.post(
        "/transfer/finalize_transfer",
        data={"transfer_code": data["transfer_code"], "otp": "123456"},
    )
    assert finalized.status_code == 200
    assert finalized.json()["message"] == "Transfer has been queued"
    assert finalized.json()["data"]["status"] == "pending"
    event = await _ended(receiver, ref, "transfer.success")
    assert event["data"]["status"] == "success"
    again = await client.post(
        "/transfer/finalize_transfer",
        json={"transfer_code": data["transfer_code"], "otp": "123456"},
    )
    assert again.status_code == 400


async def test_answer_success(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    code = await recipient(client)
    ref = reference("wd")
    await sandbox.rule(kind="transfer", reference=ref, answer="success", outcome="success")
    response = await transfer(client, code, reference=ref)
    assert response.json()["message"] == "Transfer has been queued"
    assert response.json()["data"]["status"] == "success"
    await _ended(receiver, ref, "transfer.success")


@pytest.mark.parametrize("outcome", ["failed", "reversed"])
async def test_failed_and_reversed_transfers_give_the_money_back(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver, outcome: str
) -> None:
    code = await recipient(client)
    ref = reference("wd")
    await sandbox.rule(kind="transfer", reference=ref, outcome=outcome)
    before = await sandbox.balance()
    response = await transfer(client, code, reference=ref, amount=70000)
    assert response.json()["data"]["status"] == "pending"
    assert await sandbox.balance() == before - 70000
    event = await _ended(receiver, ref, f"transfer.{outcome}")
    assert event["data"]["status"] == outcome
    assert event["data"]["reference"] == ref
    assert event["data"]["amount"] == 70000
    assert event["data"]["recipient"]["details"]["bank_code"] == "058"
    verified = (await client.get(f"/transfer/verify/{ref}")).json()["data"]
    assert verified["status"] == outcome
    assert await sandbox.balance() == before
    assert [r.event["event"] for r in receiver.events(ref)] == [f"transfer.{outcome}"]


async def test_outcome_none_stays_pending(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    code = await recipient(client)
    ref = reference("wd")
    other = reference("wd")
    await sandbox.rule(kind="transfer", reference=ref, outcome="none")
    await transfer(client, code, reference=ref)
    # A transfer made after it settles normally; by then the first would have too.
    await transfer(client, code, reference=other)
    await _ended(receiver, other, "transfer.success")
    assert (await client.get(f"/transfer/verify/{ref}")).json()["data"]["status"] == "pending"
    assert receiver.events(ref) == []
    assert await sandbox.deliveries(reference=ref) == []


async def test_a_rule_without_reference_applies_to_the_next_transfers(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    code = await recipient(client)
    await sandbox.rule(kind="transfer", outcome="failed", times=2)
    refs = [reference("wd") for _ in range(3)]
    for ref in refs:
        await transfer(client, code, reference=ref)
    assert [(await _ended(receiver, ref, "transfer.failed"))["event"] for ref in refs[:2]] == [
        "transfer.failed",
        "transfer.failed",
    ]
    await _ended(receiver, refs[2], "transfer.success")
