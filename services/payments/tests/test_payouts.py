"""Payout accounts, and payouts that are never sent twice: pending, otp, timeouts and 5xx are
resolved by verifying the transfer; failed and reversed transfers are reported."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from krika_common.events import WithdrawalRequested
from payments.models import Payout, PayoutStatus

from .factories import Actor, Market, now

ACCOUNT = {"bank_code": "058", "account_number": "0123456789"}


async def add_account(market: Market, actor: Actor | None = None, **body: str) -> Any:
    return await market.client.post(
        "/payments/payout-accounts",
        json=ACCOUNT | body,
        headers=(actor or market.provider).headers,
    )


@pytest.fixture
def transfers(market: Market, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every POST /transfer the worker sends (a spy on the real client)."""
    sent: list[str] = []
    real = market.deps.paystack.transfer

    async def spy(**kwargs: Any) -> Any:
        sent.append(kwargs["reference"])
        return await real(**kwargs)

    monkeypatch.setattr(market.deps.paystack, "transfer", spy)
    return sent


async def withdraw(market: Market, amount: int = 500_000) -> uuid.UUID:
    withdrawal_id = uuid.uuid4()
    await market.deliver(
        WithdrawalRequested(
            withdrawal_id=withdrawal_id,
            provider_id=market.provider.id,
            amount=amount,
            currency="NGN",
            requested_at=now(),
        )
    )
    return withdrawal_id


async def payout(market: Market, withdrawal_id: uuid.UUID) -> Payout:
    async with market.sessionmaker() as session:
        found = await session.get(Payout, withdrawal_id)
        assert found is not None
        return found


async def test_payout_accounts(market: Market, admin: Actor, mint_token: Any) -> None:
    banks = await market.client.get("/payments/banks", headers=market.provider.headers)
    assert banks.status_code == 200
    assert {"code": "058", "name": "Guaranty Trust Bank"} in banks.json()["items"]

    added = await add_account(market)
    assert added.status_code == 201, added.text
    account = added.json()
    assert account["account_number_last4"] == "6789"
    assert account["account_name"]
    assert "account_number" not in account
    assert account["bank_name"] == "Guaranty Trust Bank"
    [event] = await market.events("payments.payout_account_added")
    assert event["provider_id"] == str(market.provider.id)

    # The same account again: the same one; another replaces it (removed event).
    assert (await add_account(market)).json()["id"] == account["id"]
    other = await add_account(market, account_number="0123456780")
    assert other.status_code == 201
    listed = await market.client.get("/payments/payout-accounts", headers=market.provider.headers)
    assert [a["id"] for a in listed.json()["items"]] == [other.json()["id"]]
    [removed] = await market.events("payments.payout_account_removed")
    assert removed["payout_account_id"] == account["id"]

    # Bad input and other people.
    unknown_bank = await add_account(market, bank_code="999")
    assert unknown_bank.status_code == 422
    assert unknown_bank.json()["error"] == "unknown_bank"
    unresolved = await add_account(market, account_number="0000000001")
    assert unresolved.status_code == 422
    assert unresolved.json()["error"] == "account_not_resolved"
    short = await add_account(market, account_number="12345")
    assert short.status_code == 422
    assert (await add_account(market, market.customer)).status_code == 403
    stranger = Actor(mint_token, "provider")
    gone = await market.client.delete(
        f"/payments/payout-accounts/{other.json()['id']}", headers=stranger.headers
    )
    assert gone.status_code == 404
    assert (await market.client.get("/payments/payout-accounts", headers=stranger.headers)).json()[
        "items"
    ] == []
    deleted = await market.client.delete(
        f"/payments/payout-accounts/{other.json()['id']}", headers=market.provider.headers
    )
    assert deleted.status_code == 204
    assert len(await market.events("payments.payout_account_removed")) == 2


async def test_a_payout_succeeds_once(market: Market, transfers: list[str], admin: Actor) -> None:
    assert (await add_account(market)).status_code == 201
    withdrawal_id = await withdraw(market)
    await withdraw_again_is_nothing(market, withdrawal_id)
    listed = await market.client.get("/payments/payouts", headers=admin.headers)
    assert [p["withdrawal_id"] for p in listed.json()["items"]] == [str(withdrawal_id)]
    await market.settled(
        lambda: market.events("payments.payout_succeeded", withdrawal_id=withdrawal_id),
        what="payout succeeded",
    )
    [event] = await market.events("payments.payout_succeeded")
    assert event["amount"] == 500_000
    assert event["transfer_code"].startswith("TRF_")
    await market.follow_up(3)
    assert transfers == [str(withdrawal_id)]
    assert len(await market.events("payments.payout_succeeded")) == 1
    assert (
        await market.client.get("/payments/payouts", headers=market.provider.headers)
    ).status_code == 403


async def withdraw_again_is_nothing(market: Market, withdrawal_id: uuid.UUID) -> None:
    await market.deliver(
        WithdrawalRequested(
            withdrawal_id=withdrawal_id,
            provider_id=market.provider.id,
            amount=500_000,
            currency="NGN",
            requested_at=now(),
        )
    )


@pytest.mark.parametrize(
    ("rule", "then"),
    [
        ({"kind": "transfer", "answer": "pending", "outcome": "success"}, None),
        ({"kind": "transfer", "answer": "otp", "outcome": "success"}, "finalize"),
        (
            {
                "kind": "fault",
                "method": "POST",
                "path": "/transfer",
                "fault": "timeout",
                "effect": True,
            },
            None,
        ),
        (
            {
                "kind": "fault",
                "method": "POST",
                "path": "/transfer",
                "fault": "server_error",
                "effect": True,
            },
            None,
        ),
    ],
    ids=["pending", "otp", "timeout-after-effect", "5xx-after-effect"],
)
async def test_unclear_answers_are_verified_never_resent(
    market: Market, transfers: list[str], rule: dict[str, Any], then: str | None
) -> None:
    assert (await add_account(market)).status_code == 201
    await market.sandbox.rule(**rule)
    withdrawal_id = await withdraw(market)
    await market.follow_up()
    if then == "finalize":
        await market.settled(
            lambda: _status_is(market, withdrawal_id, PayoutStatus.otp), what="waiting for the OTP"
        )
        found = await payout(market, withdrawal_id)
        # The OTP is entered on Paystack's side (the dashboard), as an admin would.
        finalized = await market.sandbox_call(
            "POST",
            "/transfer/finalize_transfer",
            json={"transfer_code": found.transfer_code, "otp": "123456"},
        )
        assert finalized.status_code == 200, finalized.text
    await market.settled(
        lambda: market.events("payments.payout_succeeded", withdrawal_id=withdrawal_id),
        within=20,
        what="payout succeeded",
    )
    await market.follow_up(3)
    assert transfers == [str(withdrawal_id)], "one POST /transfer only"
    assert len(await market.events("payments.payout_succeeded")) == 1


async def _status_is(market: Market, withdrawal_id: uuid.UUID, status: str) -> bool:
    return (await payout(market, withdrawal_id)).status == status


async def test_a_transfer_paystack_never_got_is_sent_again(
    market: Market, transfers: list[str]
) -> None:
    """A 5xx before anything happened: verify says "not found", so sending again is safe."""
    assert (await add_account(market)).status_code == 201
    await market.sandbox.rule(
        kind="fault", method="POST", path="/transfer", fault="server_error", effect=False
    )
    withdrawal_id = await withdraw(market)
    await market.settled(
        lambda: market.events("payments.payout_succeeded", withdrawal_id=withdrawal_id),
        within=20,
        what="payout succeeded",
    )
    assert transfers == [str(withdrawal_id)] * 2


@pytest.mark.parametrize("outcome", ["failed", "reversed"])
async def test_failed_and_reversed_transfers_are_reported(market: Market, outcome: str) -> None:
    assert (await add_account(market)).status_code == 201
    await market.sandbox.rule(kind="transfer", answer="pending", outcome=outcome)
    withdrawal_id = await withdraw(market)
    await market.settled(
        lambda: market.events("payments.payout_failed", withdrawal_id=withdrawal_id),
        what=f"payout {outcome}",
    )
    [event] = await market.events("payments.payout_failed")
    assert event["reason"] == f"transfer {outcome}"
    assert await market.events("payments.payout_succeeded") == []


async def test_no_payout_account_fails_at_once(market: Market) -> None:
    withdrawal_id = await withdraw(market)
    [event] = await market.events("payments.payout_failed", withdrawal_id=withdrawal_id)
    assert event["reason"] == "no_payout_account"


async def test_insufficient_balance_fails_the_payout(market: Market) -> None:
    assert (await add_account(market)).status_code == 201
    withdrawal_id = await withdraw(market, amount=10**15)
    await market.settled(
        lambda: market.events("payments.payout_failed", withdrawal_id=withdrawal_id),
        what="payout failed",
    )
    [event] = await market.events("payments.payout_failed")
    assert "balance" in event["reason"].lower()
