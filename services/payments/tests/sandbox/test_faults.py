"""Fault rules: a 500 or a hang, before the operation (nothing happened) or after it
(`effect`: it happened, only the answer is lost)."""

from __future__ import annotations

import time

import httpx
import pytest

from payments.sandbox.testing import Sandbox

from .factories import recipient, reference, transfer

SERVER_ERROR = {"status": False, "message": "An error occurred"}


async def test_server_error_without_effect(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    code = await recipient(client)
    await sandbox.rule(kind="fault", method="POST", path="/transfer", fault="server_error")
    balance = await sandbox.balance()
    ref = reference("wd")
    response = await transfer(client, code, reference=ref)
    assert response.status_code == 500
    assert response.json() == SERVER_ERROR
    assert (await client.get(f"/transfer/verify/{ref}")).status_code == 404
    assert await sandbox.balance() == balance
    # One-shot: the retry goes through.
    assert (await transfer(client, code, reference=ref)).status_code == 200
    assert (await client.get(f"/transfer/verify/{ref}")).status_code == 200


async def test_server_error_with_effect(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    code = await recipient(client)
    await sandbox.rule(
        kind="fault", method="POST", path="/transfer", fault="server_error", effect=True
    )
    balance = await sandbox.balance()
    ref = reference("wd")
    response = await transfer(client, code, reference=ref, amount=12345)
    assert response.status_code == 500
    assert response.json() == SERVER_ERROR
    # It happened: verifying finds it, the balance paid for it, and a blind retry is refused.
    verified = await client.get(f"/transfer/verify/{ref}")
    assert verified.status_code == 200
    assert verified.json()["data"]["amount"] == 12345
    assert await sandbox.balance() <= balance - 12345
    retry = await transfer(client, code, reference=ref, amount=12345)
    assert retry.status_code == 400


async def test_timeout_without_effect(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    await sandbox.rule(kind="fault", method="POST", path="/transaction/initialize", fault="timeout")
    ref = reference()
    body = {"email": "ada@example.com", "amount": 5000, "reference": ref}
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/transaction/initialize", json=body, timeout=0.5)
    verified = await client.get(f"/transaction/verify/{ref}")
    assert verified.json()["message"] == "Transaction reference not found"
    # A client that waits the hang out (timeout_seconds is 2 s in tests) gets a 504.
    await sandbox.rule(kind="fault", method="POST", path="/transaction/initialize", fault="timeout")
    started = time.monotonic()
    response = await client.post("/transaction/initialize", json=body, timeout=10)
    assert time.monotonic() - started >= 1.9
    assert response.status_code == 504
    assert response.json()["status"] is False
    assert (await client.get(f"/transaction/verify/{ref}")).status_code == 400


async def test_timeout_with_effect(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    await sandbox.rule(
        kind="fault",
        method="POST",
        path="/transaction/initialize",
        fault="timeout",
        effect=True,
        times=2,
    )
    ref = reference()
    body = {"email": "ada@example.com", "amount": 5000, "reference": ref}
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/transaction/initialize", json=body, timeout=0.5)
    verified = await client.get(f"/transaction/verify/{ref}")
    assert verified.status_code == 200
    assert verified.json()["data"]["status"] == "abandoned"
    # The second use: a patient client gets the real answer, late.
    other = reference()
    started = time.monotonic()
    response = await client.post(
        "/transaction/initialize", json=body | {"reference": other}, timeout=10
    )
    assert time.monotonic() - started >= 1.9
    assert response.status_code == 200
    assert response.json()["data"]["reference"] == other
    assert (await sandbox.deliveries(reference=other)) == []


async def test_a_path_prefix_and_any_method(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    await sandbox.rule(kind="fault", path="/transaction/verify/*", fault="server_error")
    assert (await client.get("/transaction/verify/anything")).status_code == 500
    assert (await client.get("/transaction/verify/anything")).status_code == 400
    # A path that does not match leaves the rule in place.
    await sandbox.rule(kind="fault", method="get", path="/bank", fault="server_error")
    assert (
        await client.get("/bank/resolve?account_number=0123456789&bank_code=058")
    ).status_code == 200
    assert (await client.post("/bank")).status_code == 405
    assert (await client.get("/bank")).status_code == 500


async def test_a_refused_call_does_not_use_the_fault(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    await sandbox.rule(kind="fault", method="GET", path="/bank", fault="server_error")
    async with httpx.AsyncClient(base_url=sandbox.base_url) as stranger:
        refused = await stranger.get("/bank", headers={"authorization": "Bearer sk_test_wrong"})
    assert refused.status_code == 401
    assert (await client.get("/bank")).status_code == 500
    assert (await client.get("/bank")).status_code == 200
