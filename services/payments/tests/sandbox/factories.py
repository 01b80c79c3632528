"""Calls a merchant makes, for the tests: initialize and pay, a recipient, a transfer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from payments.sandbox.testing import Sandbox


def reference(prefix: str = "ref") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


async def initialize(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"email": "customer@example.com", "amount": 500000, "reference": reference()}
    response = await client.post("/transaction/initialize", json=body | fields)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def paid_transaction(
    sandbox: Sandbox, client: httpx.AsyncClient, **fields: Any
) -> dict[str, Any]:
    """A successful transaction (verified)."""
    started = await initialize(client, **fields)
    await sandbox.pay(started["authorization_url"])
    verified = await client.get(f"/transaction/verify/{started['reference']}")
    data: dict[str, Any] = verified.json()["data"]
    assert data["status"] == "success"
    return data


async def recipient(client: httpx.AsyncClient, account_number: str = "0123456789") -> str:
    response = await client.post(
        "/transferrecipient",
        json={
            "type": "nuban",
            "name": "Ada Obi",
            "account_number": account_number,
            "bank_code": "058",
            "currency": "NGN",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["recipient_code"])


async def transfer(client: httpx.AsyncClient, recipient_code: str, **fields: Any) -> httpx.Response:
    body = {
        "source": "balance",
        "amount": 250000,
        "recipient": recipient_code,
        "reason": "Payout",
        "currency": "NGN",
        "reference": reference("wd"),
    }
    return await client.post("/transfer", json=body | fields)
