"""Every Paystack endpoint and every control requires the secret key as a Bearer token, and
refuses without it as Paystack does (its catalogue's messages, 401)."""

from __future__ import annotations

import httpx
import pytest

from payments.sandbox.testing import Sandbox

ROUTES = [
    ("POST", "/transaction/initialize"),
    ("GET", "/transaction/verify/abc"),
    ("GET", "/transaction/1"),
    ("GET", "/bank"),
    ("GET", "/bank/resolve?account_number=0123456789&bank_code=058"),
    ("POST", "/transferrecipient"),
    ("POST", "/transfer"),
    ("POST", "/transfer/finalize_transfer"),
    ("GET", "/transfer/verify/abc"),
    ("POST", "/refund"),
    ("GET", "/refund/1"),
    ("GET", "/_sandbox/rules"),
    ("PUT", "/_sandbox/config"),
    ("GET", "/_sandbox/webhooks"),
    ("PUT", "/_sandbox/balance"),
]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "No Authorization Header was found"),
        ({"authorization": ""}, "No Authorization Header was found"),
        ({"authorization": "sk_test_whatever"}, "Format is Authorization Bearer [secret key]"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "Format is Authorization Bearer [secret key]"),
        ({"authorization": "Bearer"}, "Format is Authorization Bearer [secret key]"),
        ({"authorization": "Bearer sk_test_not_the_key"}, "Invalid key"),
    ],
)
async def test_refused_without_the_secret_key(
    sandbox: Sandbox, headers: dict[str, str], message: str
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url, timeout=10.0) as http:
        for method, path in ROUTES:
            response = await http.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path)
            assert response.json() == {"status": False, "message": message}, (method, path)


async def test_the_public_key_is_not_a_secret_key(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url, timeout=10.0) as http:
        response = await http.get(
            "/bank",
            headers={"authorization": "Bearer pk_test_krika0sandbox0a4e9b1c7d2f5083e6a9c4d1b7"},
        )
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid key"


async def test_health_needs_no_key(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url, timeout=10.0) as http:
        assert (await http.get("/healthz")).status_code == 200
