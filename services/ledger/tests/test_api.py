"""The wallet and ledger API: withdrawal rules, ownership, admin views, pagination."""

from __future__ import annotations

import uuid
from typing import Any

from krika_common.events import PayoutAccountRemoved
from ledger.models import Provider

from .factories import NGN, Actor, Books, now


async def test_withdrawal_rules(books: Books, mint_token: Any) -> None:
    # Neither KYC nor a payout account yet.
    refused = await books.withdraw(50_000)
    assert refused.status_code == 403
    assert refused.json()["error"] == "kyc_required"
    await books.ready_provider()
    await books.earned(1_000_000)  # 900,000 available

    small = await books.withdraw(9_999)
    assert small.status_code == 422
    assert small.json()["error"] == "amount_below_minimum"
    headers = {**books.provider.headers, "Idempotency-Key": "usd"}
    usd = await books.client.post(
        "/wallet/withdrawals", json={"amount": 50_000, "currency": "USD"}, headers=headers
    )
    assert usd.status_code == 422
    assert usd.json()["error"] == "unsupported_currency"
    too_much = await books.withdraw(900_001)
    assert too_much.status_code == 409
    assert too_much.json()["error"] == "insufficient_funds"
    assert (await books.wallet())["reserved"] == 0
    assert await books.events("ledger.withdrawal_requested") == []

    # A replay answers the first withdrawal; the money is reserved once.
    first = await books.withdraw(400_000, key="w-1")
    replay = await books.withdraw(400_000, key="w-1")
    assert first.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()
    assert (await books.wallet())["reserved"] == 400_000
    missing = await books.client.post(
        "/wallet/withdrawals", json={"amount": 1, "currency": NGN}, headers=books.provider.headers
    )
    assert missing.status_code == 400

    # Only the provider sees it; a customer cannot withdraw.
    stranger = Actor(mint_token, "provider")
    withdrawal_id = first.json()["id"]
    other = await books.client.get(f"/wallet/withdrawals/{withdrawal_id}", headers=stranger.headers)
    assert other.status_code == 404
    by_admin = await books.client.get(
        f"/wallet/withdrawals/{withdrawal_id}", headers=books.admin.headers
    )
    assert by_admin.status_code == 200
    assert (await books.withdraw(10_000, actor=books.customer)).status_code == 403
    listed = await books.client.get("/wallet/withdrawals", headers=books.provider.headers)
    assert [w["id"] for w in listed.json()["items"]] == [withdrawal_id]
    assert (await books.client.get("/wallet/withdrawals", headers=stranger.headers)).json()[
        "items"
    ] == []

    # Without a payout account (removed), no withdrawal.
    await books.deliver(
        PayoutAccountRemoved(
            payout_account_id=await _payout_account_id(books),
            provider_id=books.provider.id,
            removed_at=now(),
        )
    )
    no_account = await books.withdraw(10_000)
    assert no_account.status_code == 409
    assert no_account.json()["error"] == "payout_account_required"


async def _payout_account_id(books: Books) -> uuid.UUID:
    async with books.sessionmaker() as session:
        provider = await session.get(Provider, books.provider.id)
        assert provider is not None
        assert provider.payout_account_id is not None
        return provider.payout_account_id


async def test_a_new_wallet_shows_zeros(books: Books, mint_token: Any) -> None:
    someone = Actor(mint_token, "customer")
    answer = await books.client.get("/wallet", headers=someone.headers)
    assert answer.json() == {
        "balances": [
            {
                "currency": NGN,
                "available": 0,
                "reserved": 0,
                "in_escrow": 0,
                "lifetime_earned": 0,
                "refund_payable": 0,
            }
        ]
    }
    assert (await books.client.get("/wallet")).status_code == 401


async def test_transactions_are_paginated(books: Books) -> None:
    for _ in range(5):
        await books.earned(100_000)
    first = await books.client.get(
        "/wallet/transactions", params={"limit": 2}, headers=books.provider.headers
    )
    page = first.json()
    assert len(page["items"]) == 2
    seen = [t["id"] for t in page["items"]]
    while page["next_cursor"]:
        page = (
            await books.client.get(
                "/wallet/transactions",
                params={"limit": 2, "cursor": page["next_cursor"]},
                headers=books.provider.headers,
            )
        ).json()
        seen += [t["id"] for t in page["items"]]
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    assert all(t["amount"] == 90_000 for t in first.json()["items"])
    bad = await books.client.get(
        "/wallet/transactions", params={"cursor": "nonsense"}, headers=books.provider.headers
    )
    assert bad.status_code == 400


async def test_admin_views(books: Books) -> None:
    await books.earned(1_000_000)
    for path in ("/ledger/accounts", "/ledger/trial-balance", "/ledger/invariants"):
        assert (await books.client.get(path, headers=books.provider.headers)).status_code == 403
    accounts = (await books.client.get("/ledger/accounts", headers=books.admin.headers)).json()
    names = {a["name"]: a for a in accounts["items"]}
    assert names["platform:commission"]["balance"] == 100_000
    assert names[f"provider:{books.provider.id}:available"]["balance"] == 900_000
    trial = (await books.client.get("/ledger/trial-balance", headers=books.admin.headers)).json()
    assert trial["totals"] == {NGN: 0}
    kinds = {line["kind"]: line for line in trial["lines"]}
    assert kinds["clearing"]["balance"] == 1_000_000
    assert kinds["commission"]["balance"] == -100_000
    checked = (await books.client.get("/ledger/invariants", headers=books.admin.headers)).json()
    assert checked["ok"] is True
    assert {c["name"] for c in checked["checks"]} == {
        "every_entry_balances",
        "postings_sum_to_zero",
        "cached_balances_match_postings",
        "settled_orders_escrow_zero",
        "no_guarded_account_negative",
    }
