"""GET /bank and GET /bank/resolve."""

from __future__ import annotations

import base64

import httpx
import pytest

from payments.sandbox.banks import account_name

EXPECTED_CODES = {
    "044": "Access Bank",
    "058": "Guaranty Trust Bank",
    "011": "First Bank of Nigeria",
    "033": "United Bank For Africa",
    "057": "Zenith Bank",
    "070": "Fidelity Bank",
    "214": "First City Monument Bank",
    "232": "Sterling Bank",
    "035": "Wema Bank",
    "050": "Ecobank Nigeria",
}


async def test_nigerian_banks_with_their_codes(client: httpx.AsyncClient) -> None:
    response = await client.get("/bank", params={"country": "nigeria", "perPage": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] is True
    assert body["message"] == "Banks retrieved"
    banks = {bank["code"]: bank for bank in body["data"]}
    for code, name in EXPECTED_CODES.items():
        assert banks[code]["name"] == name
    access = banks["044"]
    assert set(access) >= {
        "id", "name", "slug", "code", "longcode", "gateway", "pay_with_bank", "supports_transfer",
        "active", "is_deleted", "country", "currency", "type", "createdAt", "updatedAt",
    }  # fmt: skip
    assert (access["slug"], access["country"], access["currency"], access["type"]) == (
        "access-bank",
        "Nigeria",
        "NGN",
        "nuban",
    )
    assert isinstance(access["id"], int)
    names = [bank["name"].lower() for bank in body["data"]]
    assert names == sorted(names)
    assert body["meta"] == {"next": None, "previous": None, "perPage": 100}


async def test_pages_and_cursors(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/bank", params={"perPage": 100})).json()["data"]
    first = (await client.get("/bank", params={"perPage": 5})).json()
    assert first["data"] == everything[:5]
    assert first["meta"]["perPage"] == 5
    assert first["meta"]["previous"] is None
    assert base64.b64decode(first["meta"]["next"]) == f"bank:{everything[4]['id']}".encode()
    second = (
        await client.get("/bank", params={"perPage": 5, "next": first["meta"]["next"]})
    ).json()
    assert second["data"] == everything[5:10]
    back = (
        await client.get("/bank", params={"perPage": 5, "previous": second["meta"]["previous"]})
    ).json()
    assert back["data"] == everything[:5]
    paged = (await client.get("/bank", params={"perPage": 5, "page": 2})).json()
    assert paged["data"] == everything[5:10]


@pytest.mark.parametrize("params", [{"country": "ghana"}, {"currency": "KES"}])
async def test_other_countries_have_no_banks_here(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    body = (await client.get("/bank", params=params)).json()
    assert body["status"] is True
    assert body["data"] == []


async def test_resolve_an_account(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/bank/resolve", params={"account_number": "0123456789", "bank_code": "058"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Account number resolved"
    assert body["data"] == {
        "account_number": "0123456789",
        "account_name": account_name("0123456789"),
        "bank_id": 9,
    }
    again = await client.get(
        "/bank/resolve", params={"account_number": "0123456789", "bank_code": "044"}
    )
    assert again.json()["data"]["account_name"] == body["data"]["account_name"]
    other = await client.get(
        "/bank/resolve", params={"account_number": "2233445566", "bank_code": "058"}
    )
    assert other.json()["data"]["account_name"] == account_name("2233445566")
    assert account_name("0123456789").isupper()


@pytest.mark.parametrize(
    ("account_number", "bank_code"),
    [
        ("0000001234", "058"),  # the sandbox's unresolvable accounts
        ("0123456789", "999"),  # no such bank
        ("012345678", "058"),  # not ten digits
    ],
)
async def test_unresolvable_accounts(
    client: httpx.AsyncClient, account_number: str, bank_code: str
) -> None:
    response = await client.get(
        "/bank/resolve", params={"account_number": account_number, "bank_code": bank_code}
    )
    assert response.status_code == 422
    assert response.json()["status"] is False
    assert (
        response.json()["message"]
        == "Could not resolve account name. Check parameters or try again."
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bank_code": "058"}, "Account number is required"),
        ({"account_number": "0123456789"}, "bank_code is required"),
        ({"account_number": "01234abcde", "bank_code": "058"}, "Account number should be numeric"),
    ],
)
async def test_resolve_refusals(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/bank/resolve", params=params)
    assert response.status_code == 400
    assert response.json()["message"] == message
