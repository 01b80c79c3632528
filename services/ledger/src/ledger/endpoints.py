"""Wallet and ledger routes: parse, authorise, call the use case, answer.

`/wallet/*` is the caller's own wallet (any signed-in user; withdrawals are the provider's).
`/ledger/*` is for admins: accounts, trial balance, parked events, invariants.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from krika_common.auth import CurrentUser, Principal, require_role
from krika_common.db import SessionDep
from krika_common.errors import responses
from krika_common.idempotency import IDEMPOTENCY_ERRORS, IdempotencyKeyHeader, idempotent
from krika_common.pagination import InvalidCursor, Page
from ledger import service
from ledger.errors import (
    AmountBelowMinimum,
    InsufficientFunds,
    KycRequired,
    PayoutAccountRequired,
    UnsupportedCurrency,
    WithdrawalNotFound,
)
from ledger.flows import Ledger
from ledger.models import AccountKind, ParkedEvent, Withdrawal
from ledger.schemas import (
    AccountOut,
    InvariantsOut,
    ParkedOut,
    TransactionOut,
    TrialBalanceOut,
    WalletOut,
    WithdrawalIn,
    WithdrawalOut,
)


def get_ledger(request: Request) -> Ledger:
    found: Ledger = request.app.state.ledger
    return found


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
ProviderDep = Annotated[Principal, Depends(require_role("provider"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=100)]

wallet = APIRouter(prefix="/wallet", tags=["wallet"])
ledger = APIRouter(prefix="/ledger", tags=["ledger"])


@wallet.get("", response_model=WalletOut)
async def get_wallet(user: CurrentUser, session: SessionDep, deps: LedgerDep) -> WalletOut:
    """Your balances per currency (zeros included for the platform currency)."""
    return await service.wallet(session, deps, user.id)


@wallet.get(
    "/transactions", response_model=Page[TransactionOut], responses=responses(InvalidCursor)
)
async def list_transactions(
    user: CurrentUser, session: SessionDep, cursor: Cursor = None, limit: Limit = 20
) -> Page[TransactionOut]:
    """Every movement of your wallet, newest first: each tied to its order or withdrawal."""
    return await service.transactions(session, user.id, cursor=cursor, limit=limit)


@wallet.post(
    "/withdrawals",
    status_code=status.HTTP_201_CREATED,
    response_model=WithdrawalOut,
    responses=responses(
        *IDEMPOTENCY_ERRORS,
        InsufficientFunds,
        AmountBelowMinimum,
        UnsupportedCurrency,
        PayoutAccountRequired,
        KycRequired,
    ),
)
async def request_withdrawal(
    body: WithdrawalIn,
    request: Request,
    user: ProviderDep,
    session: SessionDep,
    deps: LedgerDep,
    _key: IdempotencyKeyHeader = None,
) -> Response:
    """Provider: send money from your available balance to your payout account
    (`Idempotency-Key` required). It is reserved at once; more than available is refused."""

    async def run() -> WithdrawalOut:
        found = await service.request_withdrawal(session, deps, user.id, body)
        return WithdrawalOut.model_validate(found)

    return await idempotent(request, session, scope=str(user.id), body=body, run=run)


@wallet.get("/withdrawals", response_model=Page[WithdrawalOut], responses=responses(InvalidCursor))
async def list_withdrawals(
    user: ProviderDep, session: SessionDep, cursor: Cursor = None, limit: Limit = 20
) -> Page[Withdrawal]:
    """Provider: your withdrawals, newest first."""
    return await service.withdrawals(session, user.id, cursor=cursor, limit=limit)


@wallet.get(
    "/withdrawals/{withdrawal_id}",
    response_model=WithdrawalOut,
    responses=responses(WithdrawalNotFound),
)
async def get_withdrawal(
    withdrawal_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Withdrawal:
    """One of your withdrawals (an admin: any)."""
    return await service.get_withdrawal(session, withdrawal_id, user.id, "admin" in user.roles)


@ledger.get("/accounts", response_model=Page[AccountOut], responses=responses(InvalidCursor))
async def list_accounts(
    _admin: AdminDep,
    session: SessionDep,
    kind: AccountKind | None = None,
    owner_id: uuid.UUID | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[AccountOut]:
    """Admin: accounts with their balances, newest first."""
    return await service.accounts(session, kind=kind, owner_id=owner_id, cursor=cursor, limit=limit)


@ledger.get("/trial-balance", response_model=TrialBalanceOut)
async def trial_balance(_admin: AdminDep, session: SessionDep) -> TrialBalanceOut:
    """Admin: debits and credits per kind of account and currency; each currency sums to 0."""
    return await service.trial_balance(session)


@ledger.get("/parked-events", response_model=Page[ParkedOut], responses=responses(InvalidCursor))
async def list_parked(
    _admin: AdminDep,
    session: SessionDep,
    include_resolved: bool = False,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[ParkedEvent]:
    """Admin: events that could not apply yet (waiting for their money), newest first."""
    return await service.parked(
        session, include_resolved=include_resolved, cursor=cursor, limit=limit
    )


@ledger.get("/invariants", response_model=InvariantsOut)
async def invariants(_admin: AdminDep, session: SessionDep) -> InvariantsOut:
    """Admin: the ledger's invariants, checked now over every posting."""
    return await service.invariants(session)
