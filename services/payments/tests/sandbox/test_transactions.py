"""POST /transaction/initialize, GET /transaction/verify/:reference, GET /transaction/:id."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from payments.sandbox.testing import Sandbox

from .factories import initialize, reference


async def test_initialize_answers_a_checkout_url(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    ref = reference()
    response = await client.post(
        "/transaction/initialize",
        json={"email": "ada@example.com", "amount": 500000, "reference": ref},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] is True
    assert body["message"] == "Authorization URL created"
    data = body["data"]
    assert data["reference"] == ref
    assert re.fullmatch(r"[a-z0-9]{15}", data["access_code"])
    assert data["authorization_url"] == f"{sandbox.base_url}/checkout/{data['access_code']}"


async def test_a_reference_is_generated_when_none_is_given(client: httpx.AsyncClient) -> None:
    first = await initialize(client, reference=None)
    second = await initialize(client, reference=None)
    assert re.fullmatch(r"[a-z0-9]{10}", first["reference"])
    assert first["reference"] != second["reference"]


async def test_an_unpaid_transaction_verifies_as_abandoned(client: httpx.AsyncClient) -> None:
    started = await initialize(client, amount="750000", metadata={"order_id": "o-1"})
    response = await client.get(f"/transaction/verify/{started['reference']}")
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Verification successful"
    data = body["data"]
    assert isinstance(data["id"], int)
    assert data["domain"] == "test"
    assert data["status"] == "abandoned"
    assert data["reference"] == started["reference"]
    assert data["amount"] == data["requested_amount"] == 750000
    assert data["currency"] == "NGN"
    assert data["paid_at"] is None
    assert data["metadata"] == {"order_id": "o-1"}
    assert data["customer"]["email"] == "customer@example.com"
    assert data["customer"]["customer_code"].startswith("CUS_")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["created_at"])
    assert data["authorization"] == {}


async def test_fetch_by_id(client: httpx.AsyncClient) -> None:
    started = await initialize(client)
    verified = (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"]
    fetched = await client.get(f"/transaction/{verified['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["message"] == "Transaction retrieved"
    assert fetched.json()["data"] == verified
    # Some clients add a trailing slash (pypaystack2 does).
    assert (await client.get(f"/transaction/{verified['id']}/")).json()["data"] == verified


async def test_fetch_refusals(client: httpx.AsyncClient) -> None:
    not_numeric = await client.get("/transaction/abc")
    assert not_numeric.status_code == 400
    assert not_numeric.json()["message"] == "Transaction ID should be numeric."
    unknown = await client.get("/transaction/987654321")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Transaction not found"


async def test_verify_an_unknown_reference(client: httpx.AsyncClient) -> None:
    response = await client.get("/transaction/verify/no-such-reference")
    assert response.status_code == 400
    assert response.json() == {
        "status": False,
        "message": "Transaction reference not found",
        "meta": {
            "nextStep": "Ensure that you're passing the reference of a transaction that exists "
            "on this integration"
        },
        "type": "validation_error",
        "code": "transaction_not_found",
    }


async def test_a_duplicate_reference_is_refused(client: httpx.AsyncClient) -> None:
    started = await initialize(client)
    again = await client.post(
        "/transaction/initialize",
        json={"email": "other@example.com", "amount": 1000, "reference": started["reference"]},
    )
    assert again.status_code == 400
    assert again.json()["status"] is False
    assert again.json()["message"] == "Duplicate Transaction Reference"
    assert again.json()["code"] == "duplicate_reference"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (None, "Invalid Amount Sent"),
        ("", "Invalid Amount Sent"),
        ("abc", "Invalid Amount Sent"),
        ("5,000", "Invalid Amount Sent"),
        (100.5, "Invalid Amount Sent"),
        ("100.5", "Invalid Amount Sent"),
        (-500, "Invalid Amount Sent"),
        ("-500", "Invalid Amount Sent"),
        (True, "Invalid Amount Sent"),
        (0, "You must specify a valid amount"),
        ("0", "You must specify a valid amount"),
        (10_000_000 * 100 + 1, "Transaction amount limit exceeded"),
    ],
)
async def test_bad_amounts_are_refused(
    client: httpx.AsyncClient, amount: Any, message: str
) -> None:
    body: dict[str, Any] = {"email": "ada@example.com", "reference": reference()}
    if amount is not None:
        body["amount"] = amount
    response = await client.post("/transaction/initialize", json=body)
    assert response.status_code == 400
    assert response.json()["status"] is False
    assert response.json()["message"] == message
    unknown = await client.get(f"/transaction/verify/{body['reference']}")
    assert unknown.json()["message"] == "Transaction reference not found"


@pytest.mark.parametrize("amount", ["5000", " 5000 ", 5000, 5000.0, "5000.00"])
async def test_whole_amounts_are_taken_as_numbers_or_numeric_strings(
    client: httpx.AsyncClient, amount: Any
) -> None:
    started = await initialize(client, amount=amount)
    verified = (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"]
    assert verified["amount"] == 5000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": None}, "Email is not allowed to be empty"),
        ({"email": ""}, "Email is not allowed to be empty"),
        ({"email": "not-an-email"}, "Invalid Email Address Passed"),
        ({"reference": "has space"}, "Invalid character in transaction reference"),
        ({"reference": "semi;colon"}, "Invalid character in transaction reference"),
        ({"currency": "XYZ"}, "Currency not supported by merchant"),
    ],
)
async def test_other_refusals(
    client: httpx.AsyncClient, fields: dict[str, Any], message: str
) -> None:
    body = {"email": "ada@example.com", "amount": 5000, "reference": reference()} | fields
    response = await client.post(
        "/transaction/initialize", json={k: v for k, v in body.items() if v is not None}
    )
    assert response.status_code == 400
    assert response.json()["message"] == message


async def test_form_encoded_initialize(client: httpx.AsyncClient) -> None:
    """Paystack's PHP examples post http_build_query forms: nested metadata, channel lists."""
    ref = reference()
    response = await client.post(
        "/transaction/initialize",
        data={
            "email": "ada@example.com",
            "amount": "125000",
            "reference": ref,
            "callback_url": "https://shop.example/return",
            "metadata[order_id]": "o-9",
            "metadata[custom_fields][0][display_name]": "Order",
            "metadata[custom_fields][0][value]": "o-9",
            "channels[]": ["card", "bank"],
        },
    )
    assert response.status_code == 200, response.text
    verified = (await client.get(f"/transaction/verify/{ref}")).json()["data"]
    assert verified["amount"] == 125000
    assert verified["metadata"] == {
        "order_id": "o-9",
        "custom_fields": [{"display_name": "Order", "value": "o-9"}],
    }


async def test_metadata_as_a_json_string(client: httpx.AsyncClient) -> None:
    started = await initialize(client, metadata='{"order_id": 42}')
    verified = (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"]
    assert verified["metadata"] == {"order_id": 42}


async def test_form_encoded_refusal(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/transaction/initialize", data={"email": "ada@example.com", "amount": "12.5"}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid Amount Sent"
